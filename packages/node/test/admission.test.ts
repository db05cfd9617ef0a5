// Admission as a starting node sees it: the pure decision table, and the genesis and wait against a
// real SQLite state store (no root, no VMs).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { generateKeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { openStateStore } from '@formation/state';
import {
  type AdmissionInput,
  admissionState,
  mayFetchFormpack,
  startNetwork,
  waitForAdmission,
} from '../src/admission.ts';

const logger = createLogger('silent');
const base: AdmissionInput = {
  policy: 'admins',
  hasGenesis: true,
  hasRegisteredNodes: true,
  joining: true,
  admission: undefined,
  proposed: '10.129.5.0/24',
};

describe('admissionState (table)', () => {
  const rows: Array<[string, Partial<AdmissionInput>, ReturnType<typeof admissionState>]> = [
    [
      'admitted: the admin-given slice, not the proposed one',
      { admission: { admitted: true, formnetRange: '10.129.9.0/24' } },
      { kind: 'admitted', range: '10.129.9.0/24' },
    ],
    ['not admitted yet', {}, { kind: 'waiting' }],
    ['removed', { admission: { admitted: false, formnetRange: null } }, { kind: 'removed' }],
    ['open policy: the proposed slice', { policy: 'open' }, { kind: 'open', range: '10.129.5.0/24' }],
    [
      'joining, nothing synced yet',
      { hasGenesis: false, hasRegisteredNodes: false, policy: 'legacy-open' },
      { kind: 'no-network' },
    ],
    [
      'joining a pre-admission network',
      { hasGenesis: false, policy: 'legacy-open' },
      { kind: 'open', range: '10.129.5.0/24' },
    ],
    [
      'a lone node without genesis (old data dir)',
      { hasGenesis: false, joining: false, hasRegisteredNodes: false, policy: 'legacy-open' },
      { kind: 'open', range: '10.129.5.0/24' },
    ],
  ];
  for (const [name, over, want] of rows) {
    it(name, () => assert.deepEqual(admissionState({ ...base, ...over }), want));
  }
});

describe('genesis and waiting for admission (real store)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'form-admission-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the first node writes the genesis, is admitted at once and names the extra admins', async () => {
    const store = openStateStore({ path: join(dir, 'a.db'), logger });
    const node = generateKeyPair();
    const dev = generateKeyPair();
    const g = startNetwork(
      store,
      node,
      { name: 'test', admission: 'admins', admins: [dev.publicKey] },
      '10.129.1.0/24',
    );
    assert.ok(g && store.genesis === g);
    const net = store.views().network;
    assert.equal(net.policy, 'admins');
    assert.deepEqual([...net.admins].sort(), [node.publicKey, dev.publicKey].sort());
    assert.equal(
      startNetwork(store, node, { name: 'again', admission: 'open', admins: [] }, '10.129.2.0/24'),
      undefined,
    );
    const range = await waitForAdmission({
      store,
      key: node,
      joining: false,
      proposed: '10.129.3.0/24',
      logger,
      timeoutMs: 1000,
    });
    assert.equal(range, '10.129.1.0/24');
    store.close();
  });

  it('a joining node waits until an admin admits it, then gets the slice the admin chose', async () => {
    const store = openStateStore({ path: join(dir, 'b.db'), logger });
    const first = generateKeyPair();
    const joiner = generateKeyPair();
    startNetwork(store, first, { name: 'test', admission: 'admins', admins: [] }, '10.129.1.0/24');
    const waiting = waitForAdmission({
      store,
      key: joiner,
      joining: true,
      proposed: '10.129.1.0/24',
      logger,
      timeoutMs: 10_000,
      pollMs: 20,
    });
    let done = false;
    void waiting.then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(done, false, 'not admitted yet: still waiting');
    store.author(first, 'node.admit', { node: joiner.publicKey, formnetRange: '10.129.2.0/24' });
    assert.equal(await waiting, '10.129.2.0/24');
    store.close();
  });

  it('gives up with a coded error naming the command to run when nobody admits it in time', async () => {
    const store = openStateStore({ path: join(dir, 'c.db'), logger });
    const first = generateKeyPair();
    const joiner = generateKeyPair();
    startNetwork(store, first, { name: 'test', admission: 'admins', admins: [] }, '10.129.1.0/24');
    await assert.rejects(
      waitForAdmission({
        store,
        key: joiner,
        joining: true,
        proposed: '10.129.2.0/24',
        logger,
        timeoutMs: 100,
        pollMs: 20,
      }),
      (e: { code?: string; hint?: string }) =>
        e.code === 'TIMEOUT' && !!e.hint?.includes(`form node admit ${joiner.publicKey}`),
    );
    store.close();
  });
});

describe('mayFetchFormpack: who may download a Formpack from this node', () => {
  const node = { id: '02'.padEnd(66, 'a') };
  const stranger = '03'.padEnd(66, 'b');
  const views = {
    nodes: [node],
    instances: [
      { deleted: false, formpackId: 'f1', ownerAddress: '0xowner', replicaSet: [{ node: node.id }] },
      { deleted: true, formpackId: 'f2', ownerAddress: '0xowner', replicaSet: [{ node: node.id }] },
      { deleted: false, formpackId: 'f3', ownerAddress: '0xmallory', replicaSet: [{ node: node.id }] },
    ],
  } as unknown as Parameters<typeof mayFetchFormpack>[0];
  const rows: Array<[string, { publicKey: string; delegate?: string }, string, string, boolean]> = [
    ['an admitted node with a claim on a live instance of the owner', { publicKey: node.id }, 'f1', '0xowner', true],
    ['a key that is not an admitted node', { publicKey: stranger }, 'f1', '0xowner', false],
    ['a delegate signing for the node key', { publicKey: node.id, delegate: stranger }, 'f1', '0xowner', false],
    ['a deleted instance', { publicKey: node.id }, 'f2', '0xowner', false],
    ["an instance of another owner naming the victim's Formpack id", { publicKey: node.id }, 'f3', '0xowner', false],
    ['a Formpack no instance here runs', { publicKey: node.id }, 'f9', '0xowner', false],
  ];
  for (const [name, signer, id, owner, want] of rows) {
    it(name, () => assert.equal(mayFetchFormpack(views, signer, id, owner), want));
  }
});
