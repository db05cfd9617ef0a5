#!/usr/bin/env node
// The `form` launcher. Runs the TypeScript CLI directly on Node >= 22.18 (type stripping).
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 18)) {
  process.stderr.write(
    `form: Node ${process.versions.node} is too old (need >= 22.18).\n` +
      'hint: run it through the project: `npx form …` from the repository root, or put node_modules/.bin first on PATH.\n',
  );
  process.exit(1);
}
// Keep the type-stripped, compiled code between runs (OS temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it
// off): enabled here, before any TypeScript loads, so a warm start does not load the type stripper at all.
const { enableCompileCache } = await import('node:module');
enableCompileCache();
await import('../src/main.ts');
