// Pure pieces of formnet membership from anywhere: resolver planning, session records, peers for a
// session, process identity (a reused PID is not the process we recorded). No root needed.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { generateWireGuardKeyPair } from '@formation/identity';
import {
  isSameProcess,
  type JoinResponse,
  planResolver,
  processIdentity,
  readSessionRecords,
  reapSessions,
  resolvConfFor,
  type SessionRecord,
  sessionPeers,
  sessionRecordProblem,
  writeSessionRecord,
} from '../src/index.ts';

test('planResolver: resolvectl first, then the named namespace resolv.conf, else the exact line to add', () => {
  const o = { iface: 'formnet0', server: '10.128.3.7', domain: 'dev.formation.local' };
  assert.deepEqual(planResolver({ resolvectl: true, netns: 'laptop' }, o), { kind: 'resolvectl', ...o });
  assert.deepEqual(planResolver({ resolvectl: false, netns: 'laptop' }, o), {
    kind: 'netns-resolv',
    netns: 'laptop',
    path: '/etc/netns/laptop/resolv.conf',
    server: o.server,
    domain: o.domain,
    previous: null,
  });
  const manual = planResolver({ resolvectl: false, netns: undefined }, o);
  assert.equal(manual.kind, 'manual');
  assert.match((manual as { line: string }).line, /^nameserver 10\.128\.3\.7 /);
});

test('resolvConfFor: the node first, the earlier nameservers and options kept (glibc asks the next on REFUSED)', () => {
  const text = resolvConfFor(
    '10.128.3.7',
    'fdc.test',
    '# host\nnameserver 192.0.2.53\nsearch example\noptions ndots:1\nnameserver 10.128.3.7\n',
  );
  const lines = text.split('\n').filter((l) => !l.startsWith('#') && l);
  assert.deepEqual(lines, ['nameserver 10.128.3.7', 'nameserver 192.0.2.53', 'search example', 'options ndots:1']);
});

test('sessionPeers: the node at its public endpoint, every peer kept alive 25 s; others keep their endpoints', () => {
  const a = generateWireGuardKeyPair().publicKey;
  const b = generateWireGuardKeyPair().publicKey;
  const join = {
    peers: [
      {
        id: '0xnode',
        kind: 'node',
        address: '10.128.0.9',
        publicKey: a,
        endpoint: '127.0.0.1:51820',
        allowedIps: ['10.128.0.9/32'],
      },
      {
        id: '0xother',
        kind: 'node',
        address: '10.128.0.8',
        publicKey: b,
        endpoint: '203.0.113.4:51820',
        allowedIps: ['10.128.0.8/32'],
      },
    ],
  } as unknown as JoinResponse;
  const peers = sessionPeers(join, { id: '0xnode', endpoint: '198.51.100.11:51820' });
  assert.deepEqual(
    peers.map((p) => [p.endpoint, p.persistentKeepalive]),
    [
      ['198.51.100.11:51820', 25],
      ['203.0.113.4:51820', 25],
    ],
  );
});

function record(over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    tag: '0a1b2c',
    iface: 'fdw0a1b2c',
    netns: null,
    wireguardGo: null,
    cli: processIdentity() as NonNullable<ReturnType<typeof processIdentity>>,
    nodeUrl: 'http://198.51.100.11:3001',
    memberId: '0xabc',
    wgPublicKey: generateWireGuardKeyPair().publicKey,
    leakGuard: false,
    createdAt: new Date().toISOString(),
    ...over,
  };
}

test('sessionRecordProblem: names must be the session’s own (fdw<tag>, fdev<tag>) — a record cannot point the reaper at eth0', () => {
  assert.equal(sessionRecordProblem(record()), undefined);
  assert.equal(sessionRecordProblem(record({ netns: 'fdev0a1b2c' })), undefined);
  assert.match(sessionRecordProblem(record({ iface: 'eth0' })) as string, /iface must be fdw0a1b2c/);
  assert.match(sessionRecordProblem(record({ netns: 'laptop' })) as string, /netns/);
  assert.match(sessionRecordProblem(record({ tag: '../../x' })) as string, /tag/);
  assert.match(sessionRecordProblem(record({ cli: { pid: -1, start: 0 } })) as string, /cli/);
  assert.match(sessionRecordProblem(null) as string, /not an object/);
});

test('isSameProcess: a live PID with another start time (a reused PID) is not the recorded process', () => {
  const me = processIdentity() as NonNullable<ReturnType<typeof processIdentity>>;
  assert.equal(isSameProcess(me), true);
  assert.equal(isSameProcess({ pid: me.pid, start: me.start + 1 }), false);
  assert.equal(isSameProcess({ pid: 2 ** 22 + 7, start: 1 }), false);
  assert.equal(isSameProcess(null), false);
});

test('reapSessions: keeps sessions whose form process lives, reaps those whose PID is dead or reused, leaves bad files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fdc-sessions-'));
  try {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    const childId = await new Promise<NonNullable<ReturnType<typeof processIdentity>>>((resolve) =>
      child.once('spawn', () => resolve(processIdentity(child.pid as number) as never)),
    );
    const live = record({ tag: '000001', iface: 'fdw000001', cli: childId });
    const reused = record({ tag: '000002', iface: 'fdw000002', cli: { pid: childId.pid, start: childId.start - 1 } });
    const dead = record({ tag: '000003', iface: 'fdw000003', cli: { pid: 2 ** 22 + 9, start: 5 } });
    for (const r of [live, reused, dead]) await writeSessionRecord(dir, r);
    await writeFile(join(dir, 'junk.json'), 'not json');
    const left: string[] = [];
    const reaped = await reapSessions(dir, {
      leave: async (r) => {
        left.push(r.tag);
        return true;
      },
    });
    assert.deepEqual(reaped.map((r) => r.tag).sort(), ['000002', '000003']);
    assert.deepEqual(left.sort(), ['000002', '000003']);
    assert.deepEqual((await readdir(dir)).sort(), ['000001.json', 'junk.json']);
    assert.deepEqual((await readSessionRecords(dir)).invalid, ['junk.json']);
    // Once the owner dies, the next reap takes it too.
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.deepEqual(
      (await reapSessions(dir, { leave: async () => false })).map((r) => r.tag),
      ['000001'],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
