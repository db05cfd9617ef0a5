// Start-up cost matters here: every `form` call pays it. Node's compile cache keeps the type-stripped and
// compiled form of our TypeScript between runs (in the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it
// off). bin/form.js enables it before any TypeScript loads; enabling it here too covers running this file
// directly, before the program and its command files load.
import { enableCompileCache } from 'node:module';

enableCompileCache();
const { run } = await import('./run.ts');
await run(process.argv);
