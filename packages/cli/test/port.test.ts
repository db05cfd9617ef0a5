import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addPort, parseMapping, portLines } from '../src/actions/port.ts';
import { dev, node, oneNodeWorld, other } from './one-node-world.ts';

// `form port add|list` cores against a real in-process store: a one-node admins network, the node's
// grants written as its granter would, two owners after one port.
function world() {
  const { store, state } = oneNodeWorld('db');
  // The node's granter, in-process: grant every pending claim on a free port.
  const grant = () => {
    for (const p of store.views().ports)
      if (p.state === 'pending' && !store.views().ports.some((q) => q.port === p.port && q.state === 'active'))
        store.author(node, 'port.granted', { claim: p.claim, port: p.port });
  };
  return { store, state, grant };
}

test('parseMapping: ports and refusals with the reason (CLI_USAGE)', () => {
  assert.deepEqual(parseMapping('5432'), { port: 5432, target: 5432 });
  assert.deepEqual(parseMapping('15432:5432'), { port: 15432, target: 5432 });
  for (const [bad, why] of [
    ['443', /below 1024/],
    ['3004', /node service port|own service ports/],
    ['51820:22', /own service ports/],
    ['5432:0', /guest port 0/],
    ['x', /not <public>/],
    ['70000', /not a TCP port/],
  ] as const) {
    assert.throws(
      () => parseMapping(bad),
      (e: Error & { code?: string }) => e.code === 'CLI_USAGE' && why.test(e.message),
      bad,
    );
  }
});

test('add waits for the grant; another owner gets CONFLICT; list shows the mapping', async () => {
  const { state, grant } = world();
  const timer = setInterval(grant, 20);
  try {
    const p = await addPort(state, dev, 'db', '15432:5432', 5000, 20);
    assert.equal(p.state, 'active');
    await assert.rejects(addPort(state, other, 'theirs', '15432', 5000, 20), { code: 'CONFLICT' });
    await assert.rejects(addPort(state, dev, 'theirs', '16000', 5000, 20), { code: 'INSTANCE_NOT_FOUND' });
    const rows = (await state.ports()).filter((x) => x.owner === dev.publicKey);
    assert.match(
      portLines(rows, await state.instances())[0] ?? '',
      /^15432 {2}→ db:5432 {2}.*active.* {2}1 grant\(s\)$/,
    );
  } finally {
    clearInterval(timer);
  }
});

test('add times out naming the grants when no node grants', async () => {
  const { state } = world();
  await assert.rejects(addPort(state, dev, 'db', '15432', 60, 20), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'TIMEOUT');
    assert.match(e.message, /did not grant it within 0 s \(0 grant\(s\)\)/);
    return true;
  });
});
