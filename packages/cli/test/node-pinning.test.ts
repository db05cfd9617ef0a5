// The CLI against a node that serves its APIs over TLS bound to its key (on 127.0.0.1 here): kit init
// pins the key (first use or --node-key), later calls are pinned, another key is refused with both
// keys named, and a --node https://… of another node is checked on first use for that call.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import {
  createApiServer,
  createLogger,
  listenTls,
  loadOrCreateTlsIdentity,
  type TlsListener,
} from '@formation/service';
import { runForm } from './run-form.ts';

const nodeA = generateKeyPair();
const nodeB = generateKeyPair();

/** A pack API (what `form pack list` calls) for `node`, over TLS on 127.0.0.1:port. */
async function packApi(node: typeof nodeA, dir: string, port: number): Promise<TlsListener> {
  const app = await createApiServer({ name: 'pack', logger: createLogger('silent'), identity: node.publicKey });
  app.get('/formpacks', async () => ({ formpacks: [] }));
  const tls = await loadOrCreateTlsIdentity(join(dir, node.publicKey.slice(0, 8)), node);
  return listenTls(app, { host: '127.0.0.1', port, key: tls.key, cert: tls.cert });
}

describe('CLI pinning of a node reached over https', () => {
  let dir: string;
  let home: string;
  let listener: TlsListener;
  let url: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'form-pin-'));
    home = join(dir, 'home');
    listener = await packApi(nodeA, dir, 0);
    url = `https://127.0.0.1:${(listener.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await listener.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('kit init --node https://… trusts the key on first use, stores it and says how to check it', async () => {
    const text = await runForm(['kit', 'init', '--yes', '--node', url], { FORM_HOME: home });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`node key: ${nodeA.publicKey} \\(trusted-on-first-use\\)`));
    assert.match(text.stdout, /form node status --json/);
    const cfg = JSON.parse(await readFile(join(home, 'config.json'), 'utf8'));
    assert.equal(cfg.nodeKey, nodeA.publicKey);
    assert.equal(cfg.node, url);
  });

  it('later calls are pinned: the right node answers', async () => {
    const r = await runForm(['pack', 'list', '--json'], { FORM_HOME: home });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
  });

  it('exploit: another node at the same address is refused, naming both keys and the fix', async () => {
    const port = Number(new URL(url).port);
    await listener.close();
    listener = await packApi(nodeB, dir, port);
    const r = await runForm(['pack', 'list', '--json'], { FORM_HOME: home });
    assert.notEqual(r.code, 0);
    // --json: the error is the JSON on stdout ({ ok: false, error: { code, message, hint } }).
    const e = JSON.parse(r.stdout).error;
    assert.equal(e.code, 'NET_BAD_PEER');
    assert.match(e.message, new RegExp(`it is node ${nodeB.publicKey}, not the pinned node ${nodeA.publicKey}`));
    assert.match(e.hint, /--node-key/);
    // kit init with the old key pinned explicitly refuses too, and leaves the config as it was.
    const again = await runForm(['kit', 'init', '--yes', '--node', url, '--node-key', nodeA.publicKey], {
      FORM_HOME: home,
    });
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /not the pinned node/);
    assert.equal(JSON.parse(await readFile(join(home, 'config.json'), 'utf8')).nodeKey, nodeA.publicKey);
    // The fix the message names: pin the new key (after checking it on the node).
    const fixed = await runForm(['kit', 'init', '--yes', '--json', '--node', url, '--node-key', nodeB.publicKey], {
      FORM_HOME: home,
    });
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal(JSON.parse(fixed.stdout).nodeKeyCheck, 'verified');
    assert.equal((await runForm(['pack', 'list', '--json'], { FORM_HOME: home })).code, 0);
  });

  it('--node https://… of a node not in the config is checked on first use for that call', async () => {
    const fresh = join(dir, 'fresh-home');
    const r = await runForm(['pack', 'list', '--json', '--node', url], { FORM_HOME: fresh });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`is node ${nodeB.publicKey} \\(trusted for this command only`));
    // FORM_NODE_KEY pins it for the call: a wrong one is refused.
    const wrong = await runForm(['pack', 'list', '--json', '--node', url], {
      FORM_HOME: fresh,
      FORM_NODE_KEY: nodeA.publicKey,
    });
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stdout, /not the pinned node/);
  });

  it('a malformed --node-key is refused with a usage error', async () => {
    const r = await runForm(['kit', 'init', '--yes', '--node', url, '--node-key', '03abc'], {
      FORM_HOME: join(dir, 'h3'),
    });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not a node public key/);
  });
});

describe('serviceUrlOf: https bases keep the seed ports (+ FORM_PORT_OFFSET)', () => {
  it('adds each service port to a base without one, keeps an explicit port, honours the offset', async () => {
    const { serviceUrlOf } = await import('../src/node-client.ts');
    const before = process.env.FORM_PORT_OFFSET;
    try {
      delete process.env.FORM_PORT_OFFSET;
      assert.equal(serviceUrlOf('https://198.51.100.11', 'state'), 'https://198.51.100.11:3004');
      assert.equal(serviceUrlOf('https://198.51.100.11/', 'pack'), 'https://198.51.100.11:3003');
      assert.equal(serviceUrlOf('https://198.51.100.11:4444', 'vmm'), 'https://198.51.100.11:4444');
      process.env.FORM_PORT_OFFSET = '10';
      assert.equal(serviceUrlOf('https://198.51.100.11', 'formnet'), 'https://198.51.100.11:3011');
    } finally {
      if (before === undefined) delete process.env.FORM_PORT_OFFSET;
      else process.env.FORM_PORT_OFFSET = before;
    }
  });
});
