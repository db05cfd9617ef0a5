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
await import('../src/main.ts');
