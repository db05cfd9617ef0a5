// The VMM API's own logic (signatures, 400/404/403/409, capacity), written once and run over both
// drivers: the memory driver (api-memory.test.ts: no root, seconds) and real QEMU (api.test.ts). A
// driver that answers these differently from the other is a bug in one of them. Also the set-up both
// files share (the signers, the signed call, the cases' context), which the logs and metrics route tests
// use too.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { generateKeyPair, type KeyPair, signRequest } from '@formation/identity';
import { apiIdentity } from '@formation/service';
import type { VmmService } from '../src/service.ts';

export interface ApiReply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies of many routes, read by the assertions
  body: any;
}
export type Call = (method: string, url: string, body?: unknown, key?: KeyPair | null) => Promise<ApiReply>;

/** `app.inject` of `method url` with `body` as JSON, signed by `key` (unsigned when null): the raw reply. */
export function signedInject(app: VmmService['app'], key: KeyPair | null, method: string, url: string, body?: unknown) {
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string> = body === undefined ? {} : { 'content-type': 'application/json' };
  if (key) Object.assign(headers, signRequest(key, { method, path: url, body: text, audience: apiIdentity(app) }));
  return app.inject({ method: method as 'GET', url, headers, ...(body === undefined ? {} : { payload: text }) });
}

/** A signed `app.inject` call (by `defaultKey` unless another key, or null for unsigned, is given). */
export function signedCall(vmm: () => VmmService, defaultKey: KeyPair): Call {
  return async (method, url, body, key = defaultKey) => {
    const r = await signedInject(vmm().app, key, method, url, body);
    return { status: r.statusCode, body: r.body ? r.json() : undefined };
  };
}

export interface ApiCaseContext {
  call: Call;
  /** Another key than the owner's. */
  mallory: KeyPair;
  /** A Formpack the VMM can boot. */
  formpack: () => string;
  /** The owner's running VM (booted by an earlier test of the file). */
  vm: () => string;
  /** Run `sh -c script` in that VM over its agent: its stdout. */
  sh: (script: string) => Promise<string>;
  /** The node's capacity in MiB the cases below exceed (1024 in both files). */
  memMiB: number;
}

/**
 * What both files set up around their VMM: the owner `alice`, another signer `mallory`, alice's signed
 * call and the cases' context (a 1024 MiB node). `vmm`, `formpack` and `vm` are read when a case runs.
 */
export function apiCaseSetup(
  vmm: () => VmmService,
  formpack: () => string,
  vm: () => string,
): { alice: KeyPair; mallory: KeyPair; call: Call; ctx: ApiCaseContext } {
  const alice = generateKeyPair();
  const mallory = generateKeyPair();
  const call = signedCall(vmm, alice);
  const sh = async (script: string) => (await vmm().manager.exec(vm(), '/bin/sh', ['-c', script])).stdout;
  return { alice, mallory, call, ctx: { call, mallory, formpack, vm, sh, memMiB: 1024 } };
}

/**
 * Registers, in this order, the cases both files run on the owner's running VM right after booting it
 * (404/403, least disclosure, pause/resume); they leave it running.
 */
export function runningVmCases(ctx: ApiCaseContext): void {
  test('unknown id is 404 on every route; another signer is 403', () => notFoundAndForbidden(ctx));

  test('least disclosure: reads are signed; another signer sees neither the VM nor its console', () =>
    leastDisclosure(ctx));

  test('pause/resume; illegal transitions are 409 naming the state', () => pauseResumeTransitions(ctx));
}

/** Before any VM exists: unsigned, malformed and unknown-Formpack creates are refused and leave nothing. */
export async function refusedCreates({ call, formpack }: ApiCaseContext): Promise<void> {
  assert.equal((await call('POST', '/vms', { formpack: formpack() }, null)).body.error.code, 'AUTH_MISSING');
  assert.equal((await call('POST', '/vms', { formpack: formpack(), image: 'x.img' })).status, 400);
  assert.equal((await call('POST', '/vms', { formpack: formpack(), resources: { vcpu: 0 } })).status, 400);
  const nf = await call('POST', '/vms', { formpack: 'f'.repeat(64) });
  assert.equal(nf.status, 404);
  assert.equal(nf.body.error.code, 'PACK_NOT_FOUND');
  assert.deepEqual((await call('GET', '/vms')).body.vms, [], 'refused requests leave no VM');
}

/** An unknown id is 404 on every route; another signer is 403 and changes nothing. */
export async function notFoundAndForbidden({ call, mallory, vm }: ApiCaseContext): Promise<void> {
  for (const [m, u] of [
    ['GET', '/vms/vm-nope'],
    ['GET', '/vms/vm-nope/console'],
    ['POST', '/vms/vm-nope/stop'],
    ['POST', '/vms/vm-nope/snapshots'],
    ['DELETE', '/vms/vm-nope'],
  ] as const) {
    const r = await call(m, u, m === 'POST' ? {} : undefined);
    assert.equal(r.status, 404, `${m} ${u}`);
    assert.equal(r.body.error.code, 'VM_NOT_FOUND');
  }
  const f = await call('POST', `/vms/${vm()}/pause`, {}, mallory);
  assert.equal(f.status, 403);
  assert.equal(f.body.error.code, 'AUTH_FORBIDDEN');
  assert.equal((await call('DELETE', `/vms/${vm()}`, undefined, mallory)).status, 403);
  assert.equal((await call('GET', `/vms/${vm()}`)).body.state, 'running', 'the refused calls changed nothing');
}

/** Reads are signed; another signer sees neither the VM nor its console (404, not 403: least disclosure). */
export async function leastDisclosure({ call, mallory, vm }: ApiCaseContext): Promise<void> {
  assert.equal((await call('GET', '/vms', undefined, null)).status, 401);
  assert.equal((await call('GET', `/vms/${vm()}/console`, undefined, null)).status, 401);
  assert.deepEqual((await call('GET', '/vms', undefined, mallory)).body.vms, []);
  assert.equal((await call('GET', `/vms/${vm()}`, undefined, mallory)).status, 404);
  assert.equal((await call('GET', `/vms/${vm()}/console`, undefined, mallory)).status, 404);
  assert.ok(
    (await call('GET', '/vms')).body.vms.some((v: { id: string }) => v.id === vm()),
    'the owner sees its VM',
  );
}

/** pause/resume work; an illegal transition is 409 VM_BAD_STATE naming the state. Ends running. */
export async function pauseResumeTransitions({ call, vm }: ApiCaseContext): Promise<void> {
  const p = await call('POST', `/vms/${vm()}/pause`, {});
  assert.equal(p.status, 200);
  assert.equal(p.body.state, 'paused');
  const again = await call('POST', `/vms/${vm()}/pause`, {});
  assert.equal(again.status, 409);
  assert.equal(again.body.error.code, 'VM_BAD_STATE');
  assert.match(again.body.error.message, /Cannot pause VM .*: it is paused/);
  assert.equal((await call('POST', `/vms/${vm()}/start`, {})).status, 409);
  assert.equal((await call('POST', `/vms/${vm()}/resume`, {})).body.state, 'running');
  assert.equal((await call('POST', `/vms/${vm()}/resume`, {})).body.error.code, 'VM_BAD_STATE');
}

/** A VM that does not fit is refused with the numbers, at create and at start, and not left behind. */
export async function capacityRefusals({ call, formpack, vm, memMiB }: ApiCaseContext): Promise<void> {
  const big = memMiB * 2;
  const r = await call('POST', '/vms', { formpack: formpack(), resources: { memMiB: big } });
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'VM_NO_CAPACITY');
  assert.match(r.body.error.message, new RegExp(`memory: needs ${big} MiB, \\d+ MiB free of ${memMiB} MiB`));
  const ids = async () => (await call('GET', '/vms')).body.vms.map((v: { id: string }) => v.id);
  assert.deepEqual(await ids(), [vm()], 'the refused VM is not left behind');
  // Created without starting, it is refused at start with the same numbers, and stays created.
  const c = await call('POST', '/vms', { formpack: formpack(), resources: { memMiB: big }, start: false });
  assert.equal(c.status, 201);
  assert.equal((await call('POST', `/vms/${c.body.id}/start`, {})).body.error.code, 'VM_NO_CAPACITY');
  assert.equal((await call('GET', `/vms/${c.body.id}`)).body.state, 'created');
  assert.equal((await call('DELETE', `/vms/${c.body.id}`)).status, 200);
}

/**
 * `form commit`: revision 1 is the file `revisionFile(1)` with the hash it reports, the guest runs and
 * writes after it (thawed), the next is revision 2; another signer is 403; a paused VM is refused with
 * 409 naming the state. Ends running.
 */
export async function commitRevisions(
  { call, mallory, vm, sh }: ApiCaseContext,
  revisionFile: (revision: number) => string,
): Promise<void> {
  await sh('echo committed > /root/c');
  const c = await call('POST', `/vms/${vm()}/commit`, {});
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.revision, 1);
  assert.match(c.body.sha256, /^[0-9a-f]{64}$/);
  assert.ok(c.body.bytes > 0);
  assert.equal(
    createHash('sha256')
      .update(readFileSync(revisionFile(1)))
      .digest('hex'),
    c.body.sha256,
  );
  assert.equal(await sh('echo after > /root/d && cat /root/c'), 'committed\n', 'the guest is thawed');
  assert.equal((await call('GET', `/vms/${vm()}`)).body.state, 'running');
  assert.equal((await call('POST', `/vms/${vm()}/commit`, {})).body.revision, 2);
  assert.equal((await call('POST', `/vms/${vm()}/commit`, {}, mallory)).status, 403);
  await call('POST', `/vms/${vm()}/pause`, {});
  const paused = await call('POST', `/vms/${vm()}/commit`, {});
  assert.equal(paused.status, 409);
  assert.match(paused.body.error.message, /Cannot commit VM .*: it is paused/);
  assert.equal((await call('POST', `/vms/${vm()}/resume`, {})).body.state, 'running');
}
