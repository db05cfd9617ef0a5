#!/usr/bin/env node
// Layer lint (issue 21): every package's imports (src, test, bin) must agree with its package.json
// dependencies and its tsconfig.json references, and a package may import only packages of a lower
// layer, by the table in the root README ("Packages and layers"). Run by `npm run lint`.
// `checkLayers` is pure (tested in scripts/test/check-layers.test.mjs); the rest reads the checkout.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { basename, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

const SCOPE = '@formation/';

/**
 * Imports the layer table allows only as known debt, each with the issue that removes it. An
 * exception that is no longer needed is reported too, so the list only shrinks.
 */
export const EXCEPTIONS = [];

/** The package a bare import names (`@scope/name/sub` → `@scope/name`), or undefined for relative/builtin. */
export function packageOf(spec) {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined;
  const parts = spec.split('/');
  const name = spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  if (builtinModules.includes(name)) return undefined;
  return name;
}

/** Module specifiers a source text imports: static, dynamic, re-exports, side-effect, import.meta.resolve. */
export function importsOf(text) {
  const out = new Set();
  const patterns = [
    /^\s*(?:import|export)\s[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /(?<![.\w$])import\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\bimport\.meta\.resolve\s*\(\s*['"]([^'"]+)['"]/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) out.add(m[1]);
  return [...out];
}

/** The layer table from the README: rows `| <layer> | \`pkg\`, \`pkg\` | ... |` under "Packages and layers". */
export function parseLayerTable(readme) {
  const start = readme.indexOf('## Packages and layers');
  if (start < 0) throw new Error('README.md has no "## Packages and layers" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const layers = new Map();
  for (const line of section.split('\n')) {
    const m = /^\|\s*(\d+)\s*\|([^|]*)\|/.exec(line);
    if (!m) continue;
    for (const name of m[2].matchAll(/`([a-z0-9-]+)`/g)) layers.set(name[1], Number(m[1]));
  }
  return layers;
}

/**
 * Pure check. `packages`: [{ name (short, e.g. 'vmm'), dependencies: string[], devDependencies: string[],
 * references: string[] (short names), imports: [{ file, spec, test }] }]. `layers`: Map short name → layer.
 * Returns human-readable problems; empty when everything agrees.
 */
export function checkLayers({ packages, layers, exceptions = [] }) {
  const problems = [];
  const known = new Set(packages.map((p) => p.name));
  const usedExceptions = new Set();
  for (const pkg of packages) {
    const self = SCOPE + pkg.name;
    const deps = new Set(pkg.dependencies);
    const devDeps = new Set(pkg.devDependencies);
    if (!layers.has(pkg.name)) problems.push(`${pkg.name}: not in the README layer table ("Packages and layers")`);
    const imported = new Set(); // short names of @formation packages imported anywhere
    const reported = new Set();
    for (const { file, spec, test } of pkg.imports) {
      const dep = packageOf(spec);
      if (!dep || dep === self) continue;
      const inDeps = deps.has(dep) || (test && devDeps.has(dep));
      if (!inDeps && !reported.has(`dep:${dep}:${test}`)) {
        reported.add(`dep:${dep}:${test}`);
        const where = test || !devDeps.has(dep) ? 'dependencies' : 'dependencies (not devDependencies: src imports it)';
        problems.push(`${pkg.name}: ${file} imports ${spec}, but ${dep} is not in package.json ${where}`);
      }
      if (!dep.startsWith(SCOPE)) continue;
      const target = dep.slice(SCOPE.length);
      imported.add(target);
      if (reported.has(`layer:${target}`)) continue;
      reported.add(`layer:${target}`);
      const from = layers.get(pkg.name);
      const to = layers.get(target);
      if (from === undefined || to === undefined) continue;
      if (to < from) continue;
      const exception = exceptions.find((e) => e.from === pkg.name && e.to === target);
      if (exception) {
        usedExceptions.add(exception);
        continue;
      }
      const how = to === from ? 'the same layer' : 'a higher layer';
      problems.push(
        `${pkg.name} (layer ${from}): ${file} imports ${spec} from ${how} (${target} is layer ${to}); ` +
          'packages depend only downward (README "Packages and layers")',
      );
    }
    for (const dep of [...deps, ...devDeps]) {
      if (dep.startsWith(SCOPE) && !imported.has(dep.slice(SCOPE.length)) && known.has(dep.slice(SCOPE.length))) {
        problems.push(`${pkg.name}: package.json lists ${dep}, but nothing in ${pkg.name} imports it`);
      }
    }
    const refs = new Set(pkg.references);
    for (const target of imported) {
      if (!refs.has(target))
        problems.push(`${pkg.name}: imports ${SCOPE}${target}, but tsconfig.json has no reference to ../${target}`);
    }
    for (const ref of refs) {
      if (!imported.has(ref))
        problems.push(`${pkg.name}: tsconfig.json references ../${ref}, but nothing in ${pkg.name} imports it`);
    }
  }
  for (const e of exceptions) {
    if (!usedExceptions.has(e))
      problems.push(`exception ${e.from} -> ${e.to} is no longer needed; remove it from scripts/check-layers.mjs`);
  }
  return problems;
}

function sourceFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir)) {
    if (entry === 'node_modules' || entry === 'dist' || entry === '.tsbuild') continue;
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|tsx|mts|js|mjs)$/.test(entry) && !entry.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Reads every package under `root`/packages. */
export function readPackages(root) {
  const packagesDir = join(root, 'packages');
  const packages = [];
  for (const name of readdirSync(packagesDir).sort()) {
    const dir = join(packagesDir, name);
    if (!existsSync(join(dir, 'package.json'))) continue;
    const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    // tsconfig.json is JSON without comments in this repository.
    const tsconfig = existsSync(join(dir, 'tsconfig.json'))
      ? JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8'))
      : {};
    const imports = [];
    for (const sub of ['src', 'bin', 'test']) {
      for (const file of sourceFiles(join(dir, sub))) {
        for (const spec of importsOf(readFileSync(file, 'utf8'))) {
          imports.push({ file: relative(root, file), spec, test: sub === 'test' });
        }
      }
    }
    packages.push({
      name,
      dependencies: Object.keys(pj.dependencies ?? {}),
      devDependencies: Object.keys(pj.devDependencies ?? {}),
      references: (tsconfig.references ?? []).map((r) => basename(r.path)),
      imports,
    });
  }
  return packages;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const root = new URL('..', import.meta.url).pathname;
  const layers = parseLayerTable(readFileSync(join(root, 'README.md'), 'utf8'));
  const problems = checkLayers({ packages: readPackages(root), layers, exceptions: EXCEPTIONS });
  if (problems.length) {
    console.error(`check-layers: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  ${p}`);
    process.exit(1);
  }
  console.log(`check-layers: ${layers.size} packages agree with their package.json, tsconfig and layers`);
}
