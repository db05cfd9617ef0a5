import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { isFormError } from '@formation/interface';
import { createLogger, loadOrCreateTlsIdentity } from '@formation/service';
import { fetchFormpack, fetchRevision, isLoopbackHost, peerServiceUrl } from '../src/replication.ts';
import { formpackManifest, publishedSha256s, sha256Hex as sha } from './fixtures/formpack-manifest.ts';

/**
 * A hostile peer: a pack API on 127.0.0.1 that serves whatever manifest and artifact bytes a test
 * sets, so fetchFormpack meets traversal names, endless streams, wrong bytes and extra fields.
 */
const logger = createLogger('silent');
const ID = sha('hostile formpack');
const BYTES = {
  disk: Buffer.from('QFI\xfb not really a disk'),
  kernel: Buffer.from('kernel bytes'),
  initramfs: Buffer.from('initramfs bytes'),
};
const PUBLISHED = publishedSha256s(BYTES);

const goodManifest = (): Record<string, unknown> =>
  formpackManifest({
    id: ID,
    name: 'hostile',
    owner: `0x${'ab'.repeat(20)}`,
    createdAt: '2026-12-03T10:00:00.000Z',
    bytes: BYTES,
  });

interface Peer {
  manifest: unknown;
  /** Per artifact: bytes to send, or 'endless' to stream until the client hangs up. */
  body: Partial<Record<string, Buffer | 'endless'>>;
  /** Bytes of artifact data written to clients (to show an endless stream was cut short). */
  sent: number;
}

describe('fetchFormpack from a hostile peer', () => {
  let server: Server;
  let base: string;
  let root: string;
  const peer: Peer = { manifest: goodManifest(), body: {}, sent: 0 };

  before(async () => {
    server = createServer((req, res: ServerResponse) => {
      const m = /^\/formpacks\/([0-9a-f]{64})\/artifacts\/([a-z]+)$/.exec(req.url ?? '');
      if (!m) return void res.writeHead(404).end();
      if (m[2] === 'manifest') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(peer.manifest));
        return;
      }
      const name = m[2] as keyof typeof BYTES;
      const body = peer.body[name] ?? BYTES[name];
      if (!body) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      if (body !== 'endless') {
        peer.sent += body.length;
        res.end(body);
        return;
      }
      const chunk = Buffer.alloc(64 * 1024, 0x41);
      const pump = (): void => {
        while (!res.destroyed && peer.sent < 2 * 2 ** 30) {
          peer.sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => res.destroy());
      pump();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** A fresh node data dir: <root>/formpacks (the target) and nothing else. */
  function fresh(): string {
    root = mkdtempSync(join(tmpdir(), 'form-repl-'));
    mkdirSync(join(root, 'formpacks'));
    return join(root, 'formpacks');
  }
  /** Everything under root except the (empty) incoming dir, to show nothing else was written. */
  function tree(dir = root, pre = ''): string[] {
    const out: string[] = [];
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const rel = `${pre}${e.name}`;
      out.push(rel);
      if (e.isDirectory()) out.push(...tree(join(dir, e.name), `${rel}/`));
    }
    return out.sort();
  }

  async function refused(
    code: string,
    set: Partial<Peer>,
    published: Record<string, string> | null = PUBLISHED,
  ): Promise<void> {
    const formpacksDir = fresh();
    Object.assign(peer, { manifest: goodManifest(), body: {}, sent: 0 }, set);
    try {
      await assert.rejects(
        fetchFormpack({ id: ID, sources: [base], formpacksDir, published: published ?? undefined, logger }),
        (err: unknown) => {
          assert.ok(isFormError(err), `a FormError, got ${String(err)}`);
          assert.equal(err.code, code, err.message);
          assert.match(err.message, /^Cannot fetch Formpack /);
          return true;
        },
      );
      // Nothing outside the temp dir, nothing left in it, formpacksDir untouched.
      assert.deepEqual(
        tree().filter((p) => p !== 'formpacks-incoming'),
        ['formpacks'],
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }

  test('a valid manifest whose artifacts are the published ones is fetched', async () => {
    const formpacksDir = fresh();
    Object.assign(peer, { manifest: goodManifest(), body: {}, sent: 0 });
    try {
      assert.equal(await fetchFormpack({ id: ID, sources: [base], formpacksDir, published: PUBLISHED, logger }), base);
      assert.deepEqual(readdirSync(join(formpacksDir, ID)).sort(), [
        'disk.qcow2',
        'initramfs.img',
        'manifest.json',
        'vmlinuz',
      ]);
      assert.deepEqual(readFileSync(join(formpacksDir, ID, 'vmlinuz')), BYTES.kernel);
      assert.deepEqual(JSON.parse(readFileSync(join(formpacksDir, ID, 'manifest.json'), 'utf8')), goodManifest());
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('a traversal file name (../../etc/ld.so.preload style) is refused and nothing is written', async () => {
    const m = goodManifest() as { artifacts: { kernel: { file: string } } };
    m.artifacts.kernel.file = '../../ld.so.preload';
    await refused('PACK_BAD_MANIFEST', { manifest: m });
    assert.equal(existsSync(join(root, 'ld.so.preload')), false);
  });

  test('an artifact streamed past its declared size is cut off and refused', { timeout: 60_000 }, async () => {
    await refused('PACK_BAD_ARTIFACT', { body: { disk: 'endless' } });
    // The fetch hung up long before the 2 GiB the peer was ready to send.
    assert.ok(peer.sent < 256 * 2 ** 20, `peer sent ${peer.sent} bytes`);
  });

  test('a declared size above the Formpack limits is refused before downloading', async () => {
    const m = goodManifest() as { artifacts: { kernel: { bytes: number } } };
    m.artifacts.kernel.bytes = 2 ** 40;
    await refused('PACK_BAD_MANIFEST', { manifest: m });
    assert.equal(peer.sent, 0);
  });

  test('artifact bytes that do not hash to the published sha256 are refused', async () => {
    await refused('PACK_BAD_ARTIFACT', { body: { initramfs: Buffer.from('initramfs bytez') } });
  });

  test('a manifest with extra fields is refused', async () => {
    await refused('PACK_BAD_MANIFEST', { manifest: { ...goodManifest(), preload: '/tmp/x.so' } });
    const m = goodManifest() as { artifacts: Record<string, unknown> };
    m.artifacts.extra = { file: 'extra', sha256: PUBLISHED.disk, bytes: 1 };
    await refused('PACK_BAD_MANIFEST', { manifest: m });
  });

  test('a non-integer or hostile expose port is refused', async () => {
    const m = goodManifest() as { formfile: { expose: unknown[] } };
    m.formfile.expose = ['8080-:22,guestfwd=tcp:10.0.2.9:1-cmd:touch /tmp/x'];
    await refused('PACK_BAD_MANIFEST', { manifest: m });
  });

  test('artifacts that are not exactly what the owner published are refused', async () => {
    // The peer serves a consistent manifest and bytes, but not the owner's.
    const other = Buffer.from('another kernel');
    const m = goodManifest() as { artifacts: { kernel: { sha256: string; bytes: number } } };
    m.artifacts.kernel.sha256 = sha(other);
    m.artifacts.kernel.bytes = other.length;
    await refused('PACK_BAD_ARTIFACT', { manifest: m, body: { kernel: other } });
    // Nothing published (or an incomplete publish): nothing to check against, so nothing is fetched.
    await refused('PACK_BAD_ARTIFACT', {}, null);
    await refused('PACK_BAD_ARTIFACT', {}, { disk: PUBLISHED.disk, kernel: PUBLISHED.kernel });
  });

  test('a manifest for another Formpack is refused', async () => {
    await refused('PACK_BAD_MANIFEST', { manifest: { ...goodManifest(), id: sha('other') } });
  });
});

describe('revisions from a hostile peer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-rev-'));
  const img = (...args: string[]): void => void execFileSync('qemu-img', args, { stdio: 'ignore' });
  const hostFile = join(dir, 'host-disk');
  writeFileSync(hostFile, Buffer.alloc(2 ** 20, 0x42));
  // What a hostile committing node serves: a qcow2 whose data lives in a host file.
  const hostile = join(dir, 'hostile.qcow2');
  img('create', '-q', '-f', 'qcow2', '-o', `data_file=${hostFile}`, hostile, '1M');
  // What an honest one serves: an overlay naming the committing node's base path (replaced on apply).
  const honest = join(dir, 'honest.qcow2');
  img('create', '-q', '-f', 'qcow2', '-b', '/elsewhere/formpacks/x/disk.qcow2', '-F', 'qcow2', '-u', honest, '4M');
  const files = new Map([hostile, honest].map((f) => [sha(readFileSync(f)), readFileSync(f)]));
  const key = generateKeyPair();
  let server: Server;
  let source: string;

  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/identity') return void res.end(JSON.stringify({ identity: generateKeyPair().publicKey }));
      const body = files.get((req.url ?? '').replace('/revisions/', ''));
      if (!body) return void res.writeHead(404).end();
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    source = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a revision whose qcow2 keeps its data in a host file is refused and not cached', async () => {
    const dataDir = mkdtempSync(join(dir, 'node-'));
    const sha256 = sha(readFileSync(hostile));
    await assert.rejects(fetchRevision({ sources: [source], sha256, dataDir, key, logger }), (err: unknown) => {
      assert.ok(isFormError(err));
      assert.equal(err.code, 'VM_IMAGE_UNSAFE', err.message);
      return true;
    });
    assert.deepEqual(readdirSync(join(dataDir, 'revisions')), []);
  });

  // Applying it to a VM's disk is the VMM's (`VmManager.replaceDisk`; packages/vmm/test/replace-disk.test.ts).
  test('an honest revision is fetched (its backing name left for the VMM to replace)', async () => {
    const dataDir = mkdtempSync(join(dir, 'node-'));
    const sha256 = sha(readFileSync(honest));
    const file = await fetchRevision({ sources: [source], sha256, dataDir, key, logger });
    assert.deepEqual(readFileSync(file), readFileSync(honest));
  });
});

describe('transfers between hosts: https pinned to the peer node key from state', () => {
  const nodeK = generateKeyPair();
  const nodeOther = generateKeyPair();
  let server: HttpsServer;
  let url: string;
  let root: string;
  const hits = { n: 0 };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'form-repl-tls-'));
    const tls = await loadOrCreateTlsIdentity(join(root, 'tls'), nodeK);
    server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      hits.n++;
      const m = /^\/formpacks\/([0-9a-f]{64})\/artifacts\/([a-z]+)$/.exec(req.url ?? '');
      if (!m) return void res.writeHead(404).end();
      if (m[2] === 'manifest') return void res.end(JSON.stringify(goodManifest()));
      const body = BYTES[m[2] as keyof typeof BYTES];
      if (!body) return void res.writeHead(404).end();
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('peerServiceUrl: https for a peer on another host, plain http only on loopback', () => {
    assert.equal(peerServiceUrl({ endpoint: '198.51.100.11:3005' }, 'pack'), 'https://198.51.100.11:3003');
    assert.equal(peerServiceUrl({ endpoint: '198.51.100.11:3015' }, 'formnet'), 'https://198.51.100.11:3011');
    assert.equal(peerServiceUrl({ endpoint: '127.0.0.1:3015' }, 'pack'), 'http://127.0.0.1:3013');
    assert.equal(peerServiceUrl({ endpoint: '198.51.100.11:3005' }, 'pack', '127.0.0.1'), 'http://127.0.0.1:3003');
    assert.equal(isLoopbackHost('::1'), true);
    assert.equal(isLoopbackHost('10.0.0.1'), false);
  });

  test('a Formpack is fetched over TLS from the node state names', async () => {
    const formpacksDir = join(mkdtempSync(join(root, 'n-')), 'formpacks');
    const got = await fetchFormpack({
      id: ID,
      sources: [{ url, nodeKey: nodeK.publicKey }],
      formpacksDir,
      published: PUBLISHED,
      key: generateKeyPair(),
      logger,
    });
    assert.equal(got, url);
    assert.deepEqual(readFileSync(join(formpacksDir, ID, 'vmlinuz')), BYTES.kernel);
  });

  test('exploit: another node answering at the peer’s address gets no request and nothing is written', async () => {
    const formpacksDir = join(mkdtempSync(join(root, 'n-')), 'formpacks');
    const before = hits.n;
    await assert.rejects(
      fetchFormpack({
        id: ID,
        sources: [{ url, nodeKey: nodeOther.publicKey }],
        formpacksDir,
        published: PUBLISHED,
        key: generateKeyPair(),
        logger,
      }),
      (err: unknown) => {
        assert.ok(isFormError(err));
        const errors = (err.details as { errors: Array<{ code: string; message: string }> }).errors;
        assert.equal(errors[0]?.code, 'NET_BAD_PEER');
        assert.match(errors[0]?.message ?? '', /not the pinned node/);
        return true;
      },
    );
    assert.equal(hits.n, before, 'the request never reached the server');
    assert.equal(existsSync(join(formpacksDir, ID)), false);
    // Revisions too.
    const dataDir = mkdtempSync(join(root, 'd-'));
    await assert.rejects(
      fetchRevision({
        sources: [{ url, nodeKey: nodeOther.publicKey }],
        sha256: sha('x'),
        dataDir,
        key: generateKeyPair(),
        logger,
      }),
      (err: unknown) => isFormError(err) && /not the pinned node/.test(err.message),
    );
    assert.equal(hits.n, before);
  });
});
