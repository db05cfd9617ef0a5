import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { bytesToHex } from '@noble/hashes/utils.js';
import { decodeCheckpoint, encodeCheckpoint } from '../src/checkpoint.ts';
import { listenAddress, loadRuntimeConfig } from '../src/config.ts';
import { loadModulesDir, moduleImage, parseModule } from '../src/module.ts';
import { tmp as makeTmp } from './helpers.ts';

const made: string[] = [];
function tmp(prefix: string): string {
  const d = makeTmp(prefix);
  made.push(d);
  return d;
}
after(() => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

const ID = `sha256:${'ab'.repeat(32)}`;
const good = {
  ModuleFormat: 'web.vmdocker-js-ao.v0.1.0',
  Tags: [
    { name: 'Image-Name', value: 'formation/js-runtime:0.1.0' },
    { name: 'Image-ID', value: ID },
  ],
};

function rejects(raw: unknown, what: RegExp): void {
  assert.throws(
    () => parseModule(raw),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'RUNTIME_MODULE_INVALID');
      assert.match(err.message, what);
      return true;
    },
  );
}

describe('module validation (seed 004 checkModule)', () => {
  it('accepts a valid module and names its image', () => {
    const m = parseModule(good);
    assert.deepEqual(moduleImage(m), { name: 'formation/js-runtime:0.1.0', id: ID });
    assert.match(m.id, /^[0-9a-f]{64}$/);
    assert.equal(parseModule(good).id, m.id, 'same module, same id');
  });
  it('rejects a format without the web.vmdocker- prefix', () =>
    rejects({ ...good, ModuleFormat: 'wasm64-unknown-emscripten' }, /ModuleFormat must start with "web\.vmdocker-"/));
  it('rejects a missing ModuleFormat', () => rejects({ Tags: good.Tags }, /ModuleFormat/));
  it('rejects a missing Image-Name', () => rejects({ ...good, Tags: [good.Tags[1]] }, /tag Image-Name is missing/));
  it('rejects an empty Image-Name', () =>
    rejects({ ...good, Tags: [{ name: 'Image-Name', value: ' ' }, good.Tags[1]] }, /tag Image-Name is empty/));
  it('rejects a missing Image-ID', () => rejects({ ...good, Tags: [good.Tags[0]] }, /tag Image-ID is missing/));
  it('rejects an empty Image-ID', () =>
    rejects({ ...good, Tags: [good.Tags[0], { name: 'Image-ID', value: '' }] }, /tag Image-ID is empty/));
  it('rejects an Image-ID that is not a sha256 digest', () =>
    rejects({ ...good, Tags: [good.Tags[0], { name: 'Image-ID', value: 'latest' }] }, /Image-ID must be sha256/));
  it('names every problem at once', () =>
    rejects({ ModuleFormat: 'x', Tags: [] }, /ModuleFormat.*Image-Name is missing.*Image-ID is missing/));
  it('rejects non-objects', () => rejects([1, 2], /not a JSON object/));

  it('loads mod-*.json from a directory and reports bad files by name', async () => {
    const dir = tmp('mods');
    writeFileSync(join(dir, 'mod-good.json'), JSON.stringify(good));
    writeFileSync(join(dir, 'mod-bad.json'), JSON.stringify({ ...good, Tags: [good.Tags[0]] }));
    writeFileSync(join(dir, 'mod-broken.json'), '{');
    writeFileSync(join(dir, 'other.json'), JSON.stringify(good));
    const r = await loadModulesDir(dir);
    assert.deepEqual(
      r.modules.map((m) => m.id),
      ['good'],
    );
    assert.equal(r.errors.length, 2);
    assert.match(r.errors.join('\n'), /mod-bad\.json: .*Image-ID is missing/);
    assert.match(r.errors.join('\n'), /mod-broken\.json/);
    assert.deepEqual(await loadModulesDir(join(dir, 'absent')), { modules: [], errors: [] });
  });
});

describe('checkpoint encoding', () => {
  it('round-trips and refuses altered or truncated data', () => {
    const data = encodeCheckpoint('p1', '{"n":1}', Buffer.from('ws').toString('base64'));
    assert.equal(decodeCheckpoint(data).state, '{"n":1}');
    const altered = data.replace('{\\"n\\":1}', '{\\"n\\":2}');
    assert.notEqual(altered, data);
    assert.throws(() => decodeCheckpoint(altered), /corrupt/);
    assert.throws(() => decodeCheckpoint(data.slice(0, data.length - 10)), /not valid JSON/);
    assert.throws(() => decodeCheckpoint('{"format":"x"}'), /not a formation-runtime-checkpoint/);
  });
});

describe('runtime config (seed 004 config.yaml)', () => {
  const seedYaml = (extra = '') => `
port: :8080
ginMode: release
redisURL: redis://@localhost:6379/0
arweaveURL: https://arweave.net
hymxURL: http://127.0.0.1:8080
prvKey: 0x64dd2342616f385f3e8157cf7246cf394217e13e8f91b7d208e9f8b60e25ed1b
keyfilePath:
nodeName: test1
nodeDesc: first test node
nodeURL: http://127.0.0.1:8080
joinNetwork: false
${extra}`;
  const write = (text: string) => {
    const dir = tmp('cfg');
    writeFileSync(join(dir, 'config.yaml'), text);
    return join(dir, 'config.yaml');
  };

  it('loads the seed config.yaml as written', () => {
    const cfg = loadRuntimeConfig({ file: write(seedYaml()) });
    assert.equal(cfg.nodeName, 'test1');
    assert.deepEqual(listenAddress(cfg), { host: '127.0.0.1', port: 8080 });
    assert.equal(cfg.joinNetwork, false);
  });
  it('has no admins unless configured (file or FORM_RUNTIME_ADMINS), and a user namespace by default', () => {
    const a = `0x${'ab'.repeat(20)}`;
    const b = `0x${'cd'.repeat(20)}`;
    const plain = loadRuntimeConfig({ file: write(seedYaml()) });
    assert.deepEqual(plain.admins, []);
    assert.equal(plain.userNamespace, true);
    assert.deepEqual(loadRuntimeConfig({ file: write(seedYaml(`admins:\n  - ${a}\n`)) }).admins, [a]);
    assert.deepEqual(
      loadRuntimeConfig({ file: write(seedYaml()), env: { FORM_RUNTIME_ADMINS: ` ${a}, ${b} ` } }).admins,
      [a, b],
    );
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml()), env: { FORM_RUNTIME_ADMINS: 'alice' } }),
      (e: Error & { code?: string }) => e.code === 'CONFIG_INVALID' && /admins/.test(e.message),
    );
  });
  it('flags override the file', () => {
    const cfg = loadRuntimeConfig({ file: write(seedYaml()), flags: { port: '127.0.0.1:9099' } });
    assert.deepEqual(listenAddress(cfg), { host: '127.0.0.1', port: 9099 });
  });
  it('requires a key, and only one kind', () => {
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace(/^prvKey:.*$/m, '')) }),
      /set prvKey or keyfilePath/,
    );
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace(/^keyfilePath:.*$/m, 'keyfilePath: /x')) }),
      /not both/,
    );
  });
  it('loads a key file', () => {
    const dir = tmp('key');
    mkdirSync(dir, { recursive: true });
    const k = generateKeyPair();
    writeFileSync(join(dir, 'key.json'), JSON.stringify({ privateKey: bytesToHex(k.privateKey) }));
    const cfg = loadRuntimeConfig({
      file: write(
        seedYaml()
          .replace(/^prvKey:.*$/m, '')
          .replace(/^keyfilePath:.*$/m, `keyfilePath: ${join(dir, 'key.json')}`),
      ),
    });
    assert.equal(cfg.keyfilePath, join(dir, 'key.json'));
    assert.throws(
      () => loadRuntimeConfig({ flags: { ...cfg, keyfilePath: join(dir, 'absent') } }),
      /Cannot read key file/,
    );
  });
  it('rejects bad values with the field named', () => {
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace('redis://@localhost', 'http://localhost')) }),
      /\/redisURL/,
    );
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace('port: :8080', 'port: eighty')) }),
      /\/port/,
    );
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace('joinNetwork: false', 'joinNetwork: true')) }),
      /joinNetwork/,
    );
    assert.throws(() => loadRuntimeConfig({ file: write(seedYaml().replace('nodeName: test1', '')) }), /nodeName/);
    assert.throws(
      () => loadRuntimeConfig({ file: write(seedYaml().replace('prvKey: 0x64', 'prvKey: 0xZZ')) }),
      /\/prvKey/,
    );
    assert.throws(() => loadRuntimeConfig({ file: write('port: [1,2') }), /Cannot parse config file/);
  });
});
