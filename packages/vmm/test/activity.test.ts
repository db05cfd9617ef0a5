// Scale to zero without health probes counting (activity.ts, the wake gate's probe rules). Pure rules
// first; then, as root, real nft in namespaces (no QEMU: a namespace with a server stands in for the
// guest): probes from the node's namespace and from a routed client do not move the counters, visits
// do; a probe to a suspended address is refused without waking it, a visit wakes it.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { isFormError, PROBE_SOURCE_PORTS } from '@formation/interface';
import { requireOrSkip, until } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import {
  ActivityCounters,
  activityCounterNames,
  activityRuleset,
  activityTableName,
  parseActivityCounters,
} from '../src/activity.ts';
import { WakeGate, wakeRuleset } from '../src/wake-gate.ts';

const RANGE = `${PROBE_SOURCE_PORTS.first}-${PROBE_SOURCE_PORTS.last}`;

describe('activity counters without probes (activityRuleset, pure)', () => {
  test('per address: connections opened toward the guest from a probe port return before the counters', () => {
    const s = activityRuleset('formbr0', ['10.129.7.2', '10.129.7.2', '10.129.7.3']);
    assert.match(s, /^table ip form_act_formbr0\ndelete table ip form_act_formbr0\n/);
    for (const ip of ['10.129.7.2', '10.129.7.3']) {
      const n = activityCounterNames(ip);
      const e = ip.replace(/\./g, '\\.');
      const order = [
        new RegExp(`meta l4proto tcp ct original ip daddr ${e} ct original proto-src ${RANGE} return`),
        new RegExp(`ip daddr ${e} counter name ${n.toGuest}`),
        new RegExp(`ip saddr ${e} counter name ${n.fromGuest}`),
      ].map((re) => s.search(re));
      assert.ok(
        order.every((i) => i > 0),
        `all three rules for ${ip}`,
      );
      assert.deepEqual(
        order,
        [...order].sort((a, b) => a - b),
        'the probe exclusion comes before the counters',
      );
    }
    assert.equal(s.match(/counter in_10_129_7_2 \{/g)?.length, 1, 'a repeated address is counted once');
    for (const hook of ['forward', 'output', 'input']) assert.match(s, new RegExp(`type filter hook ${hook} `));
    assert.equal(activityRuleset('formbr0', []), 'table ip form_act_formbr0\ndelete table ip form_act_formbr0\n');
  });

  test('refuses what is not an IPv4 address (nothing reaches nft)', () => {
    for (const bad of ['10.0.0.1; flush ruleset', '300.1.1.1', '', '10.129.7.2/24']) {
      assert.throws(
        () => activityRuleset('formbr0', [bad]),
        (e: unknown) => isFormError(e) && e.code === 'VM_BAD_ARGUMENT' && /not an IPv4 address/.test(e.message),
      );
    }
  });

  test('parseActivityCounters reads guest-side bytes; missing or garbage is absent, not zero', () => {
    const json = JSON.stringify({
      nftables: [
        { metainfo: { version: '1.0.6' } },
        { counter: { name: 'in_10_129_7_2', bytes: 300, packets: 3 } },
        { counter: { name: 'out_10_129_7_2', bytes: 120, packets: 2 } },
        { counter: { name: 'in_10_129_7_3', bytes: 5 } },
      ],
    });
    const m = parseActivityCounters(json, ['10.129.7.2', '10.129.7.3']);
    assert.deepEqual(m.get('10.129.7.2'), { rxBytes: 300, txBytes: 120 });
    assert.equal(m.has('10.129.7.3'), false);
    assert.equal(parseActivityCounters('not json', ['10.129.7.2']).size, 0);
  });

  test('the wake gate lets probes through its DNAT untouched and refuses them with a reset', () => {
    const s = wakeRuleset('formbr0', '10.129.7.1', [{ ip: '10.129.7.2', port: 80, hostPort: 40123 }]);
    const ret = s.indexOf(`tcp sport ${RANGE} return`);
    assert.ok(ret > 0 && ret < s.indexOf('dnat to'), 'probes leave the nat chain before any DNAT');
    assert.match(s, new RegExp(`ip daddr 10\\.129\\.7\\.2 tcp sport ${RANGE} reject with tcp reset`));
  });
});

// ---- root: real nft in namespaces ----------------------------------------------------------------
const NODE = 'fdy-act-n';
const GUEST = 'fdy-act-g';
const CLIENT = 'fdy-act-c';
const GUEST_IP = '10.129.77.2';
const GW = '10.129.77.1';
const skip = requireOrSkip('activity counters integration test', { root: true, programs: ['ip', 'nft', 'curl'] });

const sh = (argv: string[]) => execFileSync(argv[0] as string, argv.slice(1), { stdio: 'pipe' }).toString();
const inNs = (ns: string, argv: string[]) => ['ip', 'netns', 'exec', ns, ...argv];
/** curl from `ns` (async: the wake gate's messages need the event loop); `probe` binds a probe port. */
function curl(ns: string, probe: boolean): Promise<{ code: number; body: string; err: string }> {
  const argv = ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '8'];
  if (probe) argv.push('--local-port', RANGE);
  argv.push(`http://${GUEST_IP}:8080/`);
  return new Promise((resolve) => {
    execFile('ip', argv, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? -1) : 0, body: stdout, err: stderr }),
    );
  });
}
const body = async (ns: string, probe: boolean) => (await curl(ns, probe)).body;
const total = (c: { rxBytes: number; txBytes: number }) => c.rxBytes + c.txBytes;

describe('activity counters and the wake gate on real nft (root)', { skip }, () => {
  let server: ChildProcess | undefined;
  let db: ChildProcess | undefined;
  let counters: ActivityCounters;
  const cleanup = () => {
    for (const ns of [CLIENT, GUEST, NODE]) spawnSync('ip', ['netns', 'del', ns]);
  };

  before(async () => {
    cleanup();
    for (const ns of [NODE, GUEST, CLIENT]) sh(['ip', 'netns', 'add', ns]);
    // node ⟷ guest (the "bridge" side is fdyab0 in the node's namespace), node ⟷ client (routed).
    sh(['ip', '-n', NODE, 'link', 'add', 'fdyab0', 'type', 'veth', 'peer', 'name', 'fdyag0', 'netns', GUEST]);
    sh(['ip', '-n', NODE, 'link', 'add', 'fdyac0', 'type', 'veth', 'peer', 'name', 'fdyac1', 'netns', CLIENT]);
    sh(['ip', '-n', NODE, 'addr', 'add', `${GW}/24`, 'dev', 'fdyab0']);
    sh(['ip', '-n', NODE, 'addr', 'add', '198.51.100.1/24', 'dev', 'fdyac0']);
    sh(['ip', '-n', GUEST, 'addr', 'add', `${GUEST_IP}/24`, 'dev', 'fdyag0']);
    sh(['ip', '-n', CLIENT, 'addr', 'add', '198.51.100.2/24', 'dev', 'fdyac1']);
    for (const [ns, dev] of [
      [NODE, 'fdyab0'],
      [NODE, 'fdyac0'],
      [GUEST, 'fdyag0'],
      [CLIENT, 'fdyac1'],
      [NODE, 'lo'],
      [GUEST, 'lo'],
      [CLIENT, 'lo'],
    ] as const)
      sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    sh(['ip', '-n', GUEST, 'route', 'add', 'default', 'via', GW]);
    sh(['ip', '-n', CLIENT, 'route', 'add', '10.129.77.0/24', 'via', '198.51.100.1']);
    sh(inNs(NODE, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']));
    server = spawn(
      'ip',
      [
        'netns',
        'exec',
        GUEST,
        process.execPath,
        '-e',
        "require('node:http').createServer((q, r) => r.end('hello')).listen(8080, '0.0.0.0')",
      ],
      { stdio: 'ignore' },
    );
    // A service outside on a port inside the probe range (5432): the guest's own connections to it count.
    db = spawn(
      'ip',
      [
        'netns',
        'exec',
        CLIENT,
        process.execPath,
        '-e',
        "require('node:http').createServer((q, r) => r.end('db')).listen(5432, '0.0.0.0')",
      ],
      { stdio: 'ignore' },
    );
    await until('the guest server answers', async () => (await body(NODE, false)) === 'hello', 15_000, 100);
    counters = new ActivityCounters({ netns: NODE, bridge: 'fdyab0' });
  });

  after(async () => {
    await counters?.close();
    for (const p of [server, db]) if (p?.pid) spawnSync('kill', [String(p.pid)]);
    cleanup();
  });

  test('probes (from the node and from a routed client) leave the counters still; visits move them', async () => {
    const start = await counters.count(GUEST_IP);
    assert.match(
      sh(inNs(NODE, ['nft', 'list', 'table', 'ip', activityTableName('fdyab0')])),
      /counter name "in_10_129_77_2"/,
    );
    for (let i = 0; i < 3; i++) {
      assert.equal(await body(NODE, true), 'hello', 'the node’s probe is answered');
      assert.equal(await body(CLIENT, true), 'hello', 'another node’s probe is answered');
    }
    const afterProbes = await counters.count(GUEST_IP);
    assert.deepEqual(afterProbes, start, 'six probes: not one byte counted');
    assert.equal(await body(CLIENT, false), 'hello');
    const afterVisit = await counters.count(GUEST_IP);
    assert.ok(afterVisit.rxBytes > start.rxBytes && afterVisit.txBytes > start.txBytes, 'a routed visit counts');
    assert.equal(await body(NODE, false), 'hello');
    const afterLocal = await counters.count(GUEST_IP);
    assert.ok(total(afterLocal) > total(afterVisit), 'a visit from the namespace counts');
    const out = await new Promise<string>((resolve) =>
      execFile('ip', inNs(GUEST, ['curl', '-sS', '--max-time', '5', 'http://198.51.100.2:5432/']).slice(1), (_e, o) =>
        resolve(o),
      ),
    );
    assert.equal(out, 'db');
    assert.ok(
      total(await counters.count(GUEST_IP)) > total(afterLocal),
      'the guest’s own connection to a port in the probe range counts',
    );
  });

  test('while suspended: a probe is refused and wakes nothing; a visit wakes it', async () => {
    const gate = new WakeGate({ netns: NODE, bridge: 'fdyab0', host: GW, logger: createLogger('silent') });
    let wakes = 0;
    try {
      await gate.hold({ id: 'vm-fdy', ip: GUEST_IP, ports: [8080] }, async () => {
        wakes++;
        await gate.release('vm-fdy', true);
      });
      const probe = await curl(CLIENT, true);
      assert.equal(probe.code, 7, `the probe is refused (curl exit 7), not held until a timeout: ${probe.err}`);
      assert.equal(wakes, 0, 'a probe does not wake the suspended VM');
      // A visit is held, wakes it, and is answered once spliced to the "guest" even where no other nft
      // table needs conntrack (run alone: FORM_TEST_NAME_PATTERN / --test-name-pattern "while suspended"):
      // the gate's own conntrack rule keeps the held connection's DNAT after the wake removed its rule
      // (without it the reply left untranslated and the visit timed out).
      const visit = curl(CLIENT, false);
      await until('the visit wakes the suspended VM', () => wakes === 1, 8000);
      const answered = await visit;
      assert.equal(answered.body, 'hello', `the held visit is answered: ${answered.err}`);
      assert.equal(wakes, 1);
    } finally {
      await gate.close();
    }
  });
});
