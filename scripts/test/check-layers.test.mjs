import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkLayers, importsOf, packageOf, parseLayerTable } from '../check-layers.mjs';

const layers = new Map([
  ['interface', 0],
  ['identity', 1],
  ['vmm', 2],
  ['pack', 2],
  ['node', 3],
]);

/** A package whose declarations match its imports; `over` changes one part. */
function pkg(name, imports, over = {}) {
  const deps = [...new Set(imports.map((i) => packageOf(i.spec)))].filter((d) => d && d !== `@formation/${name}`);
  return {
    name,
    dependencies: deps,
    devDependencies: [],
    references: deps.filter((d) => d.startsWith('@formation/')).map((d) => d.slice('@formation/'.length)),
    imports,
    ...over,
  };
}
const src = (spec) => ({ file: 'src/a.ts', spec, test: false });
const tst = (spec) => ({ file: 'test/a.test.ts', spec, test: true });

test('a graph that agrees and depends downward has no problems', () => {
  const packages = [
    pkg('interface', []),
    pkg('identity', [src('@formation/interface')]),
    pkg('vmm', [src('@formation/identity'), src('@formation/interface/testing'), src('node:fs'), src('./x.ts')]),
    pkg('node', [src('@formation/vmm'), src('@formation/node/light'), tst('@formation/pack')]),
  ];
  assert.deepEqual(checkLayers({ packages, layers }), []);
});

test('an import missing from package.json dependencies is reported; tests may use devDependencies', () => {
  const problems = checkLayers({
    layers,
    packages: [
      pkg('interface', []),
      pkg('identity', [src('@formation/interface'), src('tar'), tst('fast-check')], {
        dependencies: ['@formation/interface'],
        devDependencies: ['tar', 'fast-check'],
      }),
    ],
  });
  assert.equal(problems.length, 1);
  assert.match(problems[0], /identity: src\/a\.ts imports tar, but tar is not in package.json dependencies/);
});

test('package.json and tsconfig references must name exactly the imported packages', () => {
  const problems = checkLayers({
    layers,
    packages: [
      pkg('interface', []),
      pkg('identity', []),
      pkg('vmm', [src('@formation/identity')], {
        dependencies: ['@formation/identity', '@formation/interface'],
        references: ['interface'],
      }),
    ],
  });
  assert.deepEqual(problems.sort(), [
    'vmm: imports @formation/identity, but tsconfig.json has no reference to ../identity',
    'vmm: package.json lists @formation/interface, but nothing in vmm imports it',
    'vmm: tsconfig.json references ../interface, but nothing in vmm imports it',
  ]);
});

test('imports from the same or a higher layer are reported unless listed as an exception', () => {
  const packages = [
    pkg('interface', []),
    pkg('identity', [src('@formation/node')]),
    pkg('vmm', [src('@formation/pack')]),
    pkg('pack', []),
    pkg('node', []),
  ];
  const problems = checkLayers({ packages, layers });
  assert.equal(problems.length, 2);
  assert.match(
    problems[0],
    /identity \(layer 1\): .* imports @formation\/node from a higher layer \(node is layer 3\)/,
  );
  assert.match(problems[1], /vmm \(layer 2\): .* imports @formation\/pack from the same layer/);
  const exceptions = [
    { from: 'identity', to: 'node', why: 'test' },
    { from: 'vmm', to: 'pack', why: 'test' },
  ];
  assert.deepEqual(checkLayers({ packages, layers, exceptions }), []);
});

test('a package missing from the table and an exception no longer needed are reported', () => {
  const problems = checkLayers({
    layers,
    packages: [pkg('interface', []), pkg('extra', [])],
    exceptions: [{ from: 'vmm', to: 'pack', why: 'fixed' }],
  });
  assert.deepEqual(problems, [
    'extra: not in the README layer table ("Packages and layers")',
    'exception vmm -> pack is no longer needed; remove it from scripts/check-layers.mjs',
  ]);
});

test('importsOf finds static, type, re-export, side-effect, dynamic and import.meta.resolve imports only', () => {
  const text = [
    "import { a } from '@formation/a';",
    'import type {',
    '  B,',
    "} from '@formation/b/sub';",
    "export * from './local.ts';",
    "import '@formation/c';",
    "const d = await import('@formation/d');",
    "const e = import.meta.resolve('@formation/e');",
    "images.import('/runtime/images/import', { path });",
    "app.post('/import', handler);",
  ].join('\n');
  assert.deepEqual(importsOf(text).sort(), [
    './local.ts',
    '@formation/a',
    '@formation/b/sub',
    '@formation/c',
    '@formation/d',
    '@formation/e',
  ]);
  assert.equal(packageOf('@formation/b/sub'), '@formation/b');
  assert.equal(packageOf('tar'), 'tar');
  assert.equal(packageOf('fs'), undefined);
  assert.equal(packageOf('node:fs'), undefined);
  assert.equal(packageOf('./x.ts'), undefined);
});

test('parseLayerTable reads the README section', () => {
  const readme = [
    '# X',
    '## Packages and layers',
    '| layer | package | what |',
    '|---|---|---|',
    '| 0 | `interface` | contracts |',
    '| 2 | `vmm`, `pack` | two |',
    '## Next',
    '| 9 | `other` | not this section |',
  ].join('\n');
  assert.deepEqual(
    [...parseLayerTable(readme)],
    [
      ['interface', 0],
      ['vmm', 2],
      ['pack', 2],
    ],
  );
});
