import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { normalizeFormfile } from '@formation/formfile';
import { generateKeyPair, type KeyPair, signRequest } from '@formation/identity';
import type { FormpackManifest } from '@formation/interface';
import { apiIdentity, createLogger } from '@formation/service';
import { Builder, createPackService, formpackId, readBuildContext } from '../src/index.ts';
import { makeSpec, makeUser } from './spec.ts';

// Issue 17, least disclosure: the Formpack ID must not be a password-guessing oracle, and artifacts
// (whole disks with password hashes) and ENV values go only to the owner or an admitted node.
let work: string;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'form-pack-disclosure-'));
});
after(() => rmSync(work, { recursive: true, force: true }));

describe('Formpack ID and passwords', () => {
  const withPassword = (passwd: string) =>
    makeSpec({ name: 'pw', noCopy: true, users: [makeUser({ username: 'alice', passwd, sudo: true })] });

  test('the ID cannot be reproduced from the Formfile alone: guessing the password against it fails', async () => {
    const dir = join(work, 'ctx');
    mkdirSync(dir, { recursive: true });
    const b = new Builder({ dataDir: join(work, 'd1'), cacheDir: join(work, 'c1') });
    const idKey = randomBytes(32).toString('hex');
    const id = await b.idOf(withPassword('hunter2'), dir, idKey);
    // The attacker knows everything but the password (the ID is public in state and manifests).
    const digest = (await readBuildContext(withPassword('x'), dir)).digest;
    for (const guess of ['123456', 'password', 'hunter2']) {
      assert.notEqual(formpackId(normalizeFormfile(withPassword(guess)), digest), id, `guessed ${guess}`);
    }
    // Same inputs, same key: same ID (the cache works). Another password or key: another ID.
    assert.equal(await b.idOf(withPassword('hunter2'), dir, idKey), id);
    assert.notEqual(await b.idOf(withPassword('hunter3'), dir, idKey), id);
    assert.notEqual(await b.idOf(withPassword('hunter2'), dir, randomBytes(32).toString('hex')), id);
    // Without a developer key the node's own key is used: stable on this node, 0600, not the public formula.
    const nodeId = await b.idOf(withPassword('hunter2'), dir);
    assert.equal(
      await new Builder({ dataDir: join(work, 'd1'), cacheDir: join(work, 'c1') }).idOf(withPassword('hunter2'), dir),
      nodeId,
    );
    assert.notEqual(nodeId, formpackId(normalizeFormfile(withPassword('hunter2')), digest));
    assert.equal(statSync(join(work, 'd1', 'pack-id.key')).mode & 0o777, 0o600);
    // Formfiles without passwords keep the public formula (anyone can check such an ID).
    const plain = makeSpec({ name: 'plain', noCopy: true });
    assert.equal(await b.idOf(plain, dir), formpackId(normalizeFormfile(plain), digest));
  });
});

describe('who may download a Formpack', () => {
  const owner = generateKeyPair();
  const stranger = generateKeyPair();
  const peerNode = generateKeyPair();
  const id = randomBytes(32).toString('hex');
  let svc: Awaited<ReturnType<typeof createPackService>>;
  const dataDir = join(work, 'api');
  function plant(id: string): void {
    const dir = join(dataDir, 'formpacks', id);
    mkdirSync(dir, { recursive: true });
    const file = (name: string, body: string) => {
      writeFileSync(join(dir, name), body);
      return { file: name, sha256: 'ab'.repeat(32), bytes: body.length };
    };
    const manifest = {
      id,
      name: 'secretive',
      owner: owner.address,
      createdAt: new Date().toISOString(),
      formfile: {
        ...makeSpec({ name: 'secretive' }),
        env: [{ key: 'API_TOKEN', value: 'tok-very-secret', scope: { kind: 'system' } }],
      },
      resources: { vcpu: 1, memMiB: 512, diskGiB: 1 },
      cmdline: 'console=ttyS0',
      init: '/sbin/form-init',
      artifacts: {
        disk: file('disk.qcow2', 'DISK WITH $6$hash'),
        kernel: file('vmlinuz', 'kernel'),
        initramfs: file('initramfs.img', 'initramfs'),
      },
      guest: { agent: 'qemu-ga', agentChannel: 'org.qemu.guest_agent.0', sshd: 'openssh' },
    } as unknown as FormpackManifest;
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  }
  before(async () => {
    plant(id);
    svc = await createPackService({
      dataDir,
      cacheDir: join(work, 'api-cache'),
      logger: createLogger('silent'),
      authorizeFetch: (signer, formpack) => signer.publicKey === peerNode.publicKey && formpack === id,
    });
    await svc.app.ready();
  });
  after(() => svc.close());

  const get = (url: string, key?: KeyPair) =>
    svc.app.inject({
      method: 'GET',
      url,
      headers: key ? signRequest(key, { method: 'GET', path: url, audience: apiIdentity(svc.app) }) : {},
    });

  test('artifacts need a signature of the owner or of a node authorizeFetch admits', async () => {
    for (const name of ['disk', 'manifest', 'kernel', 'initramfs']) {
      const url = `/formpacks/${id}/artifacts/${name}`;
      const anon = await get(url);
      assert.equal(anon.statusCode, 401, `${name} unsigned: ${anon.body.slice(0, 80)}`);
      const other = await get(url, stranger);
      assert.equal(other.statusCode, 403, `${name} by a stranger`);
      assert.equal(other.json().error.code, 'AUTH_FORBIDDEN');
      assert.match(other.json().error.message, /is neither its owner nor a node allowed to fetch it/);
      assert.equal((await get(url, owner)).statusCode, 200, `${name} by the owner`);
      assert.equal((await get(url, peerNode)).statusCode, 200, `${name} by an admitted node`);
    }
    assert.equal((await get(`/formpacks/${id}/artifacts/disk`, owner)).body, 'DISK WITH $6$hash');
    assert.equal(
      (await get(`/formpacks/${id}/artifacts/manifest`, peerNode)).json().formfile.env[0].value,
      'tok-very-secret',
    );
  });

  test('ENV values are shown only to the owner', async () => {
    for (const url of [`/formpacks/${id}`, `/formpacks/${id.slice(0, 12)}`]) {
      const anon = await get(url);
      assert.equal(anon.statusCode, 200);
      assert.equal(anon.json().name, 'secretive');
      assert.doesNotMatch(anon.body, /tok-very-secret/);
      assert.equal(anon.json().formfile.env[0].value, '[redacted]');
      assert.doesNotMatch((await get(url, stranger)).body, /tok-very-secret/);
      assert.equal((await get(url, owner)).json().formfile.env[0].value, 'tok-very-secret');
    }
    assert.doesNotMatch((await get('/formpacks')).body, /tok-very-secret/);
    assert.match((await get('/formpacks', owner)).body, /tok-very-secret/);
  });

  test('whoever builds the same inputs again may download it too (the first builder cannot lock them out)', async () => {
    const ctxDir = join(work, 'same-inputs');
    mkdirSync(ctxDir, { recursive: true });
    const spec = makeSpec({ name: 'shared', noCopy: true });
    const sharedId = await svc.builder.idOf(spec, ctxDir);
    plant(sharedId); // built first by `owner`
    const url = `/formpacks/${sharedId}/artifacts/kernel`;
    const again = generateKeyPair();
    assert.equal((await get(url, again)).statusCode, 403);
    const r = await svc.builder.build({ spec, dir: ctxDir, owner: again.address });
    assert.equal(r.cached, true);
    assert.equal((await get(url, again)).statusCode, 200);
    assert.equal((await get(url, stranger)).statusCode, 403);
  });
});
