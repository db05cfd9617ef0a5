import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mock, test } from 'node:test';
import { keyPairFromPrivate } from '@formation/identity';
import { until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { openStateStore } from '@formation/state';
import type { DomainLookup } from '../src/domain-proof.ts';
import { parseMissingSince } from '../src/missing-since.ts';
import { type PublicDnsOptions, startPublicDns } from '../src/public-dns.ts';

// The verifier of src/public-dns.ts with its DNS reads injected (the real lookup runs in
// public-dns.test.ts against a real server): who may vouch, when it signs, and that it backs off.

const k = (i: number) => keyPairFromPrivate((i + 1).toString(16).padStart(64, '0'));
const [admin, me, stranger, dev] = [k(1), k(20), k(30), k(10)];

function world() {
  const store = openStateStore({ path: ':memory:' });
  store.author(admin, 'network.init', { name: 't', admission: 'admins', admins: [admin.publicKey] });
  store.author(admin, 'node.admit', { node: me.publicKey, formnetRange: '10.129.1.0/24' });
  for (const [i, key] of [me, stranger].entries()) {
    store.author(key, 'node.register', {
      capacity: { vcpu: 4, memMiB: 8192, diskGiB: 100 },
      endpoint: `127.0.0.1:${4001 + i}`,
      p2pPeerId: `12D3KooPeer${i}`,
      wgPublicKey: `${'AB'[i]?.repeat(42)}A=`,
      formnetRange: `10.129.${i + 1}.0/24`,
    });
  }
  const id = store.author(dev, 'instance.create', {
    formpackId: 'ab'.repeat(32),
    name: 'hello',
    replicas: 1,
    resources: { vcpu: 1, memMiB: 512, diskGiB: 5 },
  }).body.id as string;
  const token = store.author(dev, 'dns.claim', { name: 'shop.example.com', instanceId: id }).body.token as string;
  return { store, token };
}

/**
 * The public DNS of node `key` over `store` on a spare loopback port, its verifier asking `lookup`;
 * rounds every hour unless `o` says otherwise (the tests ask with verifyNow), plus the rest of `o`.
 */
function start(
  store: ReturnType<typeof world>['store'],
  key: typeof me,
  lookup: (n: string) => Promise<DomainLookup>,
  o: Partial<PublicDnsOptions> = {},
) {
  return startPublicDns({
    host: '127.0.0.1',
    port: 0,
    domain: 'dev.formation.local',
    store,
    key,
    nodeTimeoutMs: 30_000,
    verifyEveryMs: 3_600_000,
    lookup,
    logger: createLogger('silent'),
    ...o,
  });
}

test('an unadmitted node does not even look: its word would not count', async () => {
  const { store, token } = world();
  const asked: string[] = [];
  const dns = await start(store, stranger, async (n) => {
    asked.push(n);
    return { txt: [token], cname: [], errors: [] };
  });
  try {
    await dns.verifyNow();
    assert.deepEqual(asked, []);
    assert.equal(store.views().domains[0]?.verifiedBy.length, 0);
  } finally {
    await dns.close();
  }
});

test('a wrong proof signs nothing and backs off; the right one is signed once, naming the method', async () => {
  const { store, token } = world();
  let answer: DomainLookup = { txt: ['wrong'], cname: [], errors: [] };
  const asked: string[] = [];
  // Checks every 500 ms, the first back-off as long: the two calls below fall inside it.
  const dns = await start(
    store,
    me,
    async (n) => {
      asked.push(n);
      return answer;
    },
    { verifyEveryMs: 500 },
  );
  try {
    await dns.verifyNow();
    await dns.verifyNow(); // within the back-off: not asked again
    assert.deepEqual(asked, ['shop.example.com']);
    assert.equal(store.views().domains[0]?.state, 'pending');
    answer = { txt: [], cname: ['hello.dev.formation.local.'], errors: [] };
    await until('the claim verified after the back-off', async () => {
      await dns.verifyNow();
      return store.views().domains[0]?.state === 'verified';
    });
    assert.deepEqual(store.views().domains[0]?.verifiedBy, [{ node: me.publicKey, method: 'cname' }]);
    const n = asked.length;
    await dns.verifyNow(); // verified: nothing more to check
    assert.equal(asked.length, n);
    assert.ok(token);
  } finally {
    await dns.close();
  }
});

test('the back-off doubles from verifyEveryMs up to maxVerifyBackoffMs, then looks at that pace', async () => {
  const { store } = world();
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
  const looked: number[] = [];
  const lookup = async (): Promise<DomainLookup> => {
    looked.push(Date.now() - 1_000_000);
    return { txt: ['wrong'], cname: [], errors: [] };
  };
  const dns = await start(store, me, lookup, { verifyEveryMs: 100, maxVerifyBackoffMs: 400 });
  try {
    for (let t = 0; t <= 2000; t += 50) {
      mock.timers.setTime(1_000_000 + t);
      await dns.verifyNow();
    }
    assert.deepEqual(looked, [0, 100, 300, 700, 1100, 1500, 1900]);
  } finally {
    await dns.close();
    mock.timers.reset();
  }
});

test('re-check: a proof gone for the grace period is recorded as dns.lapsed (with why); a failing resolver is not a missing proof; the proof back re-verifies', async () => {
  const { store, token } = world();
  let answer: DomainLookup = { txt: [token], cname: [], errors: [] };
  const dns = await start(store, me, async () => answer, { recheckEveryMs: 1, graceMs: 300 });
  const d = () => store.views().domains[0];
  try {
    await dns.verifyNow();
    assert.equal(d()?.state, 'verified');
    // The resolver fails for longer than the grace period: nothing is recorded.
    answer = { txt: [], cname: [], errors: ['TXT: ETIMEOUT'] };
    const t0 = Date.now();
    await until('past the grace period with a failing resolver', async () => {
      await dns.verifyNow();
      return Date.now() - t0 > 600;
    });
    assert.equal(d()?.state, 'verified');
    // The TXT is gone: still verified within the grace period, then lapsed, saying why.
    answer = { txt: ['something else'], cname: [], errors: [] };
    await dns.verifyNow();
    assert.equal(d()?.state, 'verified', 'within the grace period');
    await until('the claim lapsed', async () => {
      await dns.verifyNow();
      return d()?.state === 'lapsed';
    });
    assert.equal(d()?.lapsedBy[0]?.node, me.publicKey);
    assert.match(d()?.lapsedBy[0]?.reason ?? '', /TXT "something else".*expected TXT _formation\.shop\.example\.com/);
    // Published again: the node re-verifies (after its back-off).
    answer = { txt: [token], cname: [], errors: [] };
    await until(
      'verified again',
      async () => {
        await dns.verifyNow();
        return d()?.state === 'verified';
      },
      10_000,
    );
    assert.deepEqual(d()?.lapsedBy, []);
  } finally {
    await dns.close();
  }
});

test('the grace clock survives a restart: a node restarted more often than the grace still records the lapse', async () => {
  const { store, token } = world();
  const dir = mkdtempSync(join(tmpdir(), 'form-grace-'));
  const graceFile = join(dir, 'domain-proofs.json');
  let answer: DomainLookup = { txt: [token], cname: [], errors: [] };
  const run = () => start(store, me, async () => answer, { recheckEveryMs: 1, graceMs: 400, graceFile });
  const d = () => store.views().domains[0];
  try {
    const first = await run();
    await first.verifyNow();
    assert.equal(d()?.state, 'verified');
    answer = { txt: ['gone'], cname: [], errors: [] };
    await until('the missing proof noted', async () => {
      await first.verifyNow(); // the proof is missing from now on
      return existsSync(graceFile);
    });
    await first.close();
    const saved = JSON.parse(readFileSync(graceFile, 'utf8')) as Record<string, number>;
    assert.deepEqual(Object.keys(saved), [d()?.claim]);
    assert.equal(statSync(graceFile).mode & 0o777, 0o600);
    // Down for longer than the grace; back up: one round records the lapse (a fresh clock would wait 400 ms more).
    await new Promise((r) => setTimeout(r, 500));
    const second = await run();
    try {
      await second.verifyNow();
      assert.equal(d()?.state, 'lapsed');
      assert.deepEqual(JSON.parse(readFileSync(graceFile, 'utf8')), {}, 'the clock is dropped with the lapse');
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a damaged or foreign clocks file is ignored (clock starts again), never trusted or fatal', () => {
  const now = 1_000_000;
  const claim = 'ab'.repeat(32);
  const cases: Array<[string, string, Record<string, number>, boolean]> = [
    ['not JSON', '{"', {}, true],
    ['an array', '[1,2]', {}, true],
    ['null', 'null', {}, true],
    ['a good entry', `{"${claim}": 999000}`, { [claim]: 999000 }, false],
    ['a time in the future (would stretch the grace)', `{"${claim}": 1000001}`, {}, false],
    ['not a time', `{"${claim}": "999000"}`, {}, false],
    ['not a claim id', '{"../x": 999000, "AB": 5}', {}, false],
    ['zero or negative', `{"${claim}": 0}`, {}, false],
  ];
  for (const [what, text, want, dropped] of cases) {
    const r = parseMissingSince(text, now);
    assert.deepEqual(Object.fromEntries(r.entries), want, what);
    assert.equal(r.problem !== undefined, dropped, what);
  }
});

test('a lapse reason from hostile DNS data is printable ASCII, at most 256 characters', async () => {
  const { printable } = await import('../src/public-dns.ts');
  assert.equal(printable('a\u001b[2J\u009bb'), 'a?[2J?b');
  assert.equal(printable('x'.repeat(1000)).length, 256);
});
