import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { generateKeyPair, type KeyPair, signRequest } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { apiIdentity, createLogger } from '@formation/service';
import { create as tarCreate } from 'tar';
import { Builder, type BuildInfo, type BuildRequest, type BuildResult, createPackService } from '../src/index.ts';

// The API's queue with a builder whose builds end when the test says so (no root, no mmdebstrap):
// owner A fills the queue, owner B's one build must not wait for all of A's.
class GatedBuilder extends Builder {
  readonly started: string[] = [];
  private readonly gates: Array<() => void> = [];
  override async idOf(): Promise<string> {
    return randomBytes(32).toString('hex');
  }
  override async build(req: BuildRequest): Promise<BuildResult> {
    this.started.push(req.owner);
    await new Promise<void>((resolve) => this.gates.push(resolve));
    throw new Error('gated build ends');
  }
  /** End the oldest running build. */
  release(): void {
    this.gates.shift()?.();
  }
}

let work: string;
let builder: GatedBuilder;
let svc: Awaited<ReturnType<typeof createPackService>>;
before(async () => {
  work = mkdtempSync(join(tmpdir(), 'form-pack-queue-'));
  builder = new GatedBuilder({ dataDir: join(work, 'data'), cacheDir: join(work, 'cache') });
  svc = await createPackService({ dataDir: join(work, 'data'), logger: createLogger('silent'), builder });
  await svc.app.ready();
});
after(async () => {
  await svc.close();
  rmSync(work, { recursive: true, force: true });
});

async function uploadContext(key: KeyPair) {
  const dir = join(work, `ctx-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'Formfile'), 'NAME q\nNOCOPY\n');
  const chunks: Buffer[] = [];
  for await (const c of tarCreate({ cwd: dir, portable: true }, ['Formfile']) as AsyncIterable<Buffer>) chunks.push(c);
  const tar = Buffer.concat(chunks);
  const sha = createHash('sha256').update(tar).digest('hex');
  const up = await svc.app.inject({
    method: 'POST',
    url: '/contexts',
    payload: tar,
    headers: {
      'content-type': 'application/x-tar',
      'x-form-content-sha256': sha,
      ...signRequest(key, { method: 'POST', path: '/contexts', bodySha256: sha, audience: apiIdentity(svc.app) }),
    },
  });
  return up;
}

async function startBuild(key: KeyPair): Promise<{ status: number; body: BuildInfo & { error?: { code: string } } }> {
  const up = await uploadContext(key);
  assert.equal(up.statusCode, 201, up.body);
  const body = JSON.stringify({ contextId: up.json().contextId });
  const r = await svc.app.inject({
    method: 'POST',
    url: '/builds',
    payload: body,
    headers: {
      'content-type': 'application/json',
      ...signRequest(key, { method: 'POST', path: '/builds', body, audience: apiIdentity(svc.app) }),
    },
  });
  return { status: r.statusCode, body: r.json() };
}

test("owner B's build is not stuck behind owner A's queued builds; the queue is bounded per owner", async () => {
  const a = generateKeyPair();
  const b = generateKeyPair();
  for (let i = 0; i < 4; i++) assert.equal((await startBuild(a)).status, 202);
  const fromB = await startBuild(b);
  assert.equal(fromB.status, 202);
  await until('the first build to start', () => builder.started.length === 1, 2000, 10);
  assert.deepEqual(builder.started, [a.address]);
  builder.release();
  await until('the second build to start', () => builder.started.length === 2, 2000, 10);
  assert.equal(builder.started[1], b.address, `B went second, not after all of A's: ${builder.started.join(',')}`);
  const st = await svc.app.inject({ method: 'GET', url: `/builds/${fromB.body.buildId}` });
  assert.equal(st.json().status, 'running');

  // A has 3 waiting; the per-owner bound (8 by default) refuses the 9th waiting build at once.
  for (let i = 0; i < 5; i++) assert.equal((await startBuild(a)).status, 202);
  const refused = await startBuild(a);
  assert.equal(refused.status, 429);
  assert.equal(refused.body.error?.code, 'PACK_QUEUE_FULL');
  // B still gets in.
  assert.equal((await startBuild(b)).status, 202);
  for (let i = 0; i < 12; i++) {
    builder.release();
    await sleep(5);
  }
});

test('one signer cannot fill the disk with uploaded contexts it never builds', async () => {
  const c = generateKeyPair();
  for (let i = 0; i < 4; i++) assert.equal((await uploadContext(c)).statusCode, 201);
  const fifth = await uploadContext(c);
  assert.equal(fifth.statusCode, 429, fifth.body);
  assert.equal(fifth.json().error.code, 'PACK_QUEUE_FULL');
  assert.match(fifth.json().error.message, /already has 4 uploaded contexts not built yet/);
  assert.equal((await uploadContext(generateKeyPair())).statusCode, 201, 'others still can');
});
