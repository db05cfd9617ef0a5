// Public names from "the internet" (issue 19), in two namespaces this test makes (prefix fdi):
//   fdi<n>-node: 203.0.113.10 — a node's public DNS (startPublicDns on :53) over a real state store,
//                with two verifiers checking custom domain proofs through the resolver below
//   fdi<n>-vis:  203.0.113.200 — the visitor, and "the public DNS" (a dns-packet server) the nodes ask
// Every query is `dig` from the visitor namespace; the records file is edited as an owner would. A second
// pair of addresses on the same link (node 198.51.100.10, visitor 198.51.100.200) is the network a
// flood comes from, so the rate limit it meets is its own.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns } from '@formation/net';
import { netnsPrograms, vethLink } from './fixtures/netns-link.ts';

const sh = promisify(execFile);
const N = process.pid % 10000;
const NODE_NS = `fdi${N}-node`;
const VIS_NS = `fdi${N}-vis`;
const NODE_IP = '203.0.113.10';
const PEER_IP = '203.0.113.11';
const DEAD_IP = '203.0.113.12';
const VIS_IP = '203.0.113.200';
const FLOOD_IP = '198.51.100.200';
const RATE = 20;
const DOMAIN = 'fdi.test';
const FIXTURES = join(import.meta.dirname, 'fixtures');
const skip = requireOrSkip('public DNS namespace test', { root: true, programs: ['ip', 'dig'] });

let dir = '';
const children: ChildProcess[] = [];
const lines: Array<Record<string, unknown>> = [];
// All of the fixtures' stderr is kept: the tests look for the verifier's log lines in it.
const programs = netnsPrograms(children, Number.POSITIVE_INFINITY);
const startIn = (ns: string, file: string, args: string[], onLine?: (l: string) => void): Promise<ChildProcess> =>
  programs.startIn(ns, [join(FIXTURES, file), ...args], onLine);
const nodeLog = (): string => programs.stderr();

async function records(r: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, 'records.json'), JSON.stringify(r));
}

/** dig from the visitor: status and the A records in answer order, with their TTLs. */
async function dig(name: string, ...extra: string[]): Promise<{ status: string; answers: string[]; ttls: number[] }> {
  const { stdout } = await sh('ip', [
    'netns',
    'exec',
    VIS_NS,
    'dig',
    `@${NODE_IP}`,
    name,
    'A',
    ...extra,
    '+tries=1',
    '+time=2',
    '+noall',
    '+comments',
    '+answer',
  ]);
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'none';
  const rows = stdout
    .split('\n')
    .filter((l) => /\sIN\s+A\s/.test(l))
    .map((l) => l.trim().split(/\s+/));
  return { status, answers: rows.map((r) => r[4] as string), ttls: rows.map((r) => Number(r[1])) };
}

const state = () => lines.at(-1)?.state;

describe('public DNS and custom domains from the visitor namespace', { skip }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fdi-'));
    await records({ '_formation.shop.example.com': { TXT: ['not-the-token'] } });
    await createNetns(NODE_NS);
    await createNetns(VIS_NS);
    await vethLink(
      // The second pair of addresses is the network a flood comes from.
      { dev: `fdi${N}a`, ns: NODE_NS, addrs: [`${NODE_IP}/24`, '198.51.100.10/24'] },
      { dev: `fdi${N}b`, ns: VIS_NS, addrs: [`${VIS_IP}/24`, `${FLOOD_IP}/24`] },
    );
    await startIn(VIS_NS, 'fake-public-dns.ts', [VIS_IP, '53', join(dir, 'records.json')]);
    const cfg = { host: NODE_IP, peer: PEER_IP, dead: DEAD_IP, resolver: `${VIS_IP}:53`, domain: DOMAIN, rate: RATE };
    await startIn(NODE_NS, 'public-dns-node.ts', [JSON.stringify(cfg)], (l) => lines.push(JSON.parse(l)));
  });

  after(async () => {
    await stopChildren(children, 5000);
    await deleteNetns(NODE_NS);
    await deleteNetns(VIS_NS);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('an instance name answers with the live nodes’ public addresses, rotated, TTL 30; never formnet', async () => {
    const a = await dig(`hello.${DOMAIN}`);
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual([...a.answers].sort(), [NODE_IP, PEER_IP], 'the dead node is left out');
    assert.ok(a.ttls.every((t) => t === 30));
    const b = await dig(`hello.${DOMAIN}`);
    assert.notEqual(a.answers[0], b.answers[0], 'successive answers start at another node');
    assert.equal((await dig(`nope.${DOMAIN}`)).status, 'NXDOMAIN');
    assert.equal((await dig('example.org')).status, 'REFUSED');
  });

  test('a custom domain: refused while the proof is wrong, verified through the resolver, then answered', async () => {
    // Both verifiers asked the public DNS and saw the wrong TXT (their logs say what they expected).
    await until('the verifier to report the wrong TXT', () => /TXT \\"not-the-token\\"/.test(nodeLog()), 15_000);
    assert.equal(state(), 'pending');
    assert.equal((await dig('shop.example.com')).status, 'REFUSED');
    await records({ '_formation.shop.example.com': { TXT: [lines[0]?.token as string] } });
    await until('both nodes to verify the claim', () => state() === 'verified', 15_000);
    assert.deepEqual(lines.at(-1)?.verifiedBy, ['txt', 'txt']);
    const a = await dig('shop.example.com');
    assert.equal(a.status, 'NOERROR');
    assert.deepEqual([...a.answers].sort(), [NODE_IP, PEER_IP]);
  });

  test('re-check: the TXT removed, both nodes record dns.lapsed after the grace period and the name is refused; published again, answered again', async () => {
    const token = lines[0]?.token as string;
    await records({ '_formation.shop.example.com': { TXT: ['moved-elsewhere'] } });
    await until('both nodes to record the lapse', () => state() === 'lapsed', 20_000);
    assert.equal((lines.at(-1)?.lapsedBy as string[]).length, 2);
    assert.match(
      (lines.at(-1)?.lapsedBy as string[])[0] ?? '',
      /TXT "moved-elsewhere".*expected TXT _formation\.shop\.example\.com/,
    );
    assert.equal((await dig('shop.example.com')).status, 'REFUSED');
    await records({ '_formation.shop.example.com': { TXT: [token] } });
    // Each node looks again on a doubling back-off that started when it recorded its lapse, which under
    // CI load can be long before the other node's lapse and the TXT's return; the fixture caps it at
    // 1.6 s (with the default 60 s cap CI timed out here at 45 s; alone it takes < 2 s).
    await until('verified again', () => state() === 'verified', 30_000);
    assert.equal((await dig('shop.example.com')).status, 'NOERROR');
  });

  test('a flood from one network: ~burst + rate answers, 1 in 2 of the rest truncated, none bigger than the query allows; others unharmed', async () => {
    const flood = async (count: number, type: string) => {
      const { stdout } = await sh('ip', [
        'netns',
        'exec',
        VIS_NS,
        process.execPath,
        join(FIXTURES, 'dns-flood.ts'),
        NODE_IP,
        FLOOD_IP,
        String(count),
        `hello.${DOMAIN}`,
        type,
      ]);
      return JSON.parse(stdout) as Record<string, number>;
    };
    type Stats = { answered: number; slipped: number; dropped: number };
    const stats = () => lines.at(-1)?.dnsStats as Stats;
    const before = stats();
    const f = await flood(2000, 'A');
    await new Promise((r) => setTimeout(r, 300)); // the fixture reports every 100 ms
    const after = stats();
    const served = {
      answered: after.answered - before.answered,
      slipped: after.slipped - before.slipped,
      dropped: after.dropped - before.dropped,
    };
    process.stdout.write(`# flood: ${JSON.stringify(f)} server: ${JSON.stringify(served)}\n`);
    // The limiter allows the burst (2 x rate) plus `rate` per second of sending; of the rest, the
    // server sends 1 in 2 as an empty TC=1 answer and drops the others. (Queries the kernel dropped
    // before the server read them are in neither count.)
    const allowed = 2 * RATE + Math.ceil((RATE * ((f.sendMs as number) + 1500)) / 1000) + 1;
    assert.ok((f.whole as number) >= 2 * RATE, `at least the burst is answered (${f.whole})`);
    assert.ok(served.answered <= allowed, `${served.answered} whole answers ≤ ${allowed}`);
    // Each answer the refill allows restarts the drop/slip alternation: they differ by at most that many.
    assert.ok(
      Math.abs(served.slipped - served.dropped) <= served.answered,
      `slipped ${served.slipped} ≈ dropped ${served.dropped}`,
    );
    assert.ok(served.slipped + served.dropped > 10 * served.answered, 'most of the flood met the limit');
    assert.ok((f.truncated as number) <= served.slipped && (f.whole as number) <= served.answered);
    assert.ok((f.bytesReceived as number) < (f.bytesSent as number), 'the flood got back fewer bytes than it sent');
    // A resolver in the flooded network still gets its answer over TCP; another network is not limited.
    const tcp = await dig(`hello.${DOMAIN}`, '+tcp', '-b', FLOOD_IP);
    assert.equal(tcp.status, 'NOERROR');
    assert.equal((await dig(`hello.${DOMAIN}`)).status, 'NOERROR');
    // ANY is refused (and counts against the same bucket like every answer).
    assert.equal((await dig(`hello.${DOMAIN}`, '-t', 'ANY')).status, 'REFUSED');
  });
});
