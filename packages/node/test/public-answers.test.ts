import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { StateStore } from '@formation/state';
import { loadNodeConfig } from '../src/config.ts';
import { type DomainLookup, evaluateProof, proofRecord } from '../src/domain-proof.ts';
import { ingressPlan } from '../src/ingress.ts';
import { publicAnswers, publicHostOf, rotateAnswers } from '../src/public-answers.ts';

type Views = ReturnType<StateStore['views']>;
const NOW = 1_000_000_000;
const D = 'fdi.test';
const ID = 'a'.repeat(32);
const BARE = 'b'.repeat(32);
const TOKEN = 'c'.repeat(32);

const node = (id: string, endpoint: string, beat: number | null, status = 'healthy') =>
  ({ id, endpoint, heartbeat: beat === null ? null : { ts: beat, status, used: null } }) as Views['nodes'][number];
const instance = (id: string, expose: number[], extra: Partial<Views['instances'][number]> = {}) =>
  ({
    id,
    deleted: false,
    desired: 'running',
    overQuota: false,
    formpack: { service: expose.length ? { expose } : null },
    replicaSet: [],
    ...extra,
  }) as unknown as Views['instances'][number];

function views(over: Partial<Views> = {}): Pick<Views, 'nodes' | 'instances' | 'dns' | 'domains'> {
  return {
    nodes: [
      node('n1', '198.51.100.11:4001', NOW - 1000),
      node('n2', '198.51.100.12:4001', NOW - 2000),
      node('dead', '198.51.100.13:4001', NOW - 60_000),
      node('draining', '198.51.100.14:4001', NOW - 1000, 'draining'),
      node('never', '198.51.100.15:4001', null),
      node('loop', '127.0.0.1:4001', NOW - 1000),
      node('formnet', '10.128.0.7:4001', NOW - 1000),
      node('named', 'node.example.net:4001', NOW - 1000),
    ],
    instances: [instance(ID, [80]), instance(BARE, [])],
    dns: [
      { name: `hello.${D}`, source: 'instance', instanceId: ID, addresses: ['10.129.1.2'], owner: 'o' },
      { name: `bare.${D}`, source: 'instance', instanceId: BARE, addresses: ['10.129.1.3'], owner: 'o' },
    ],
    domains: [
      {
        name: 'shop.example.com',
        instanceId: ID,
        owner: 'o',
        token: TOKEN,
        claim: 'h1',
        state: 'verified',
        verifiedBy: [],
        lapsedBy: [],
      },
      {
        name: 'wait.example.com',
        instanceId: ID,
        owner: 'o',
        token: TOKEN,
        claim: 'h2',
        state: 'pending',
        verifiedBy: [],
        lapsedBy: [],
      },
      {
        name: 'war.example.com',
        instanceId: ID,
        owner: 'o',
        token: TOKEN,
        claim: 'h3',
        state: 'contested',
        verifiedBy: [],
        lapsedBy: [],
      },
      {
        name: 'gone.example.com',
        instanceId: ID,
        owner: 'o',
        token: TOKEN,
        claim: 'h4',
        state: 'lapsed',
        verifiedBy: [],
        lapsedBy: [{ node: 'n1', reason: 'no TXT', ts: NOW }],
      },
    ],
    ...over,
  };
}
const opts = { domain: D, nodeTimeoutMs: 30_000 };
const LIVE = ['198.51.100.11', '198.51.100.12'];

test('publicAnswers: table', () => {
  const cases: Array<[string, ReturnType<typeof publicAnswers>]> = [
    // Live public nodes only: not the dead, draining, never-beating, loopback, formnet or named ones.
    [`hello.${D}`, { rcode: 'NOERROR', addresses: LIVE }],
    [`HELLO.${D.toUpperCase()}.`, { rcode: 'NOERROR', addresses: LIVE }],
    // The name exists but serves nothing publicly (no EXPOSE): NODATA, not NXDOMAIN.
    [`bare.${D}`, { rcode: 'NOERROR', addresses: [] }],
    [`nope.${D}`, { rcode: 'NXDOMAIN' }],
    [D, { rcode: 'NXDOMAIN' }],
    ['shop.example.com', { rcode: 'NOERROR', addresses: LIVE }],
    // Pending, contested and lapsed custom domains, and every other zone: refused.
    ['wait.example.com', { rcode: 'REFUSED' }],
    ['gone.example.com', { rcode: 'REFUSED' }],
    ['war.example.com', { rcode: 'REFUSED' }],
    ['example.com', { rcode: 'REFUSED' }],
    [`hello.${D}.evil.com`, { rcode: 'REFUSED' }],
  ];
  for (const [q, want] of cases) assert.deepEqual(publicAnswers(views(), q, NOW, opts), want, q);
});

test('publicAnswers: never a formnet address, and the answering node counts itself live', () => {
  const all = views();
  for (const q of [`hello.${D}`, 'shop.example.com']) {
    const a = publicAnswers(all, q, NOW, opts);
    assert.ok(a.rcode === 'NOERROR' && a.addresses.every((x) => !x.startsWith('10.')), q);
  }
  const self = publicAnswers(all, `hello.${D}`, NOW, { ...opts, self: 'dead' });
  assert.deepEqual(self, { rcode: 'NOERROR', addresses: [...LIVE, '198.51.100.13'] });
  // A heartbeat far in the future proves nothing.
  const future = views({ nodes: [node('f', '198.51.100.20:1', NOW + 3_600_000)] });
  assert.deepEqual(publicAnswers(future, `hello.${D}`, NOW, opts), { rcode: 'NOERROR', addresses: [] });
  // A deleted instance's name serves nothing even if a stale record lingers.
  const gone = views({ instances: [instance(ID, [80], { deleted: true })] });
  assert.deepEqual(publicAnswers(gone, `hello.${D}`, NOW, opts), { rcode: 'NOERROR', addresses: [] });
});

test('publicHostOf and rotateAnswers', () => {
  assert.equal(publicHostOf('198.51.100.11:4001'), '198.51.100.11');
  assert.equal(publicHostOf('127.0.0.1:4001'), null);
  assert.equal(publicHostOf('10.200.1.1:4001'), null);
  assert.equal(publicHostOf('0.0.0.0:4001'), null);
  assert.equal(publicHostOf('[::1]:4001'), null);
  assert.equal(publicHostOf('node.example.net:4001'), null);
  assert.deepEqual(rotateAnswers(['a', 'b', 'c'], 0), ['a', 'b', 'c']);
  assert.deepEqual(rotateAnswers(['a', 'b', 'c'], 4), ['b', 'c', 'a']);
  assert.deepEqual(rotateAnswers(['a', 'b', 'c'], 2, 2), ['c', 'a']);
  assert.deepEqual(rotateAnswers([], 3), []);
});

test('evaluateProof: TXT equal to the token, or a CNAME to the instance; else the reason', () => {
  const claim = { name: 'shop.example.com', token: TOKEN };
  const targets = [`hello.${D}`];
  const none: DomainLookup = { txt: [], cname: [], errors: [] };
  assert.deepEqual(evaluateProof(claim, { ...none, txt: ['other', TOKEN] }, targets), { ok: true, method: 'txt' });
  assert.deepEqual(evaluateProof(claim, { ...none, cname: [`HELLO.${D}.`] }, targets), { ok: true, method: 'cname' });
  const cases: Array<[typeof none, RegExp]> = [
    [none, /no TXT; no CNAME/],
    [{ ...none, txt: [TOKEN.slice(1)] }, /TXT "c{31}"/], // a prefix is not the token
    [{ ...none, txt: [`x${TOKEN}`] }, /TXT "xc{32}"/], // nor a string containing it
    [{ ...none, cname: ['evil.example.net'] }, /CNAME evil.example.net/],
    [{ ...none, errors: ['TXT: ETIMEOUT'] }, /ETIMEOUT/],
  ];
  for (const [lookup, re] of cases) {
    const r = evaluateProof(claim, lookup, targets);
    assert.equal(r.ok, false);
    assert.match((r as { reason: string }).reason, re);
    assert.match((r as { reason: string }).reason, new RegExp(`expected TXT _formation.shop.example.com "${TOKEN}"`));
  }
  assert.equal(evaluateProof(claim, { ...none, cname: [`hello.${D}`] }, []).ok, false, 'no targets, no CNAME proof');
  assert.match(proofRecord(claim, targets), /CNAME shop.example.com → hello.fdi.test/);
});

test('ingressPlan: a verified custom domain is a host of its instance; pending and contested are not', () => {
  const plan = ingressPlan(views() as unknown as Views, D, NOW);
  const hosts = plan.instances.find((i) => i.id === ID)?.hosts ?? [];
  assert.ok(hosts.includes('shop.example.com'));
  assert.ok(hosts.includes(`hello.${D}`));
  assert.ok(!hosts.includes('wait.example.com'));
  assert.ok(!hosts.includes('war.example.com'));
});

test('config: publicDnsPort (default 53, 0 = off) and publicResolver from env; bad values refused', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fdi-cfg-'));
  try {
    assert.equal(loadNodeConfig({ dataDir }, {}).publicDnsPort, 53);
    assert.equal(loadNodeConfig({ dataDir }, {}).publicResolver, undefined);
    const c = loadNodeConfig({ dataDir }, { FORM_PUBLIC_DNS_PORT: '0', FORM_PUBLIC_RESOLVER: '203.0.113.200:53' });
    assert.equal(c.publicDnsPort, 0);
    assert.equal(c.publicResolver, '203.0.113.200:53');
    for (const env of [{ FORM_PUBLIC_DNS_PORT: '70000' }, { FORM_PUBLIC_RESOLVER: 'resolver.example.com' }]) {
      assert.throws(() => loadNodeConfig({ dataDir }, env), { code: 'CONFIG_INVALID' }, JSON.stringify(env));
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
