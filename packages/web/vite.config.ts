import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The dashboard's front end: src/app -> dist (served by createWebService).
export default defineConfig({
  root: 'src/app',
  base: '/',
  plugins: [react()],
  build: { outDir: '../../dist', emptyOutDir: true, sourcemap: false },
});
