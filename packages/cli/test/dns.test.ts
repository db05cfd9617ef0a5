import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addDomain, domainLines, normalizeDomain, removeDomain, waitVerified } from '../src/actions/dns.ts';
import { dev, node, oneNodeWorld, other } from './one-node-world.ts';

// `form dns add|verify|rm` cores against a real in-process state store: a one-node admins network,
// the developer's instance `hello`, and the node's dns.verified written as formationd's verifier does.

const world = () => oneNodeWorld('hello');

test('add claims with a random token and prints the proof; adding again keeps the token', async () => {
  const { state } = world();
  const r = await addDomain(state, dev, 'hello', 'Shop.Example.com.');
  assert.equal(r.name, 'shop.example.com');
  assert.match(r.token, /^[0-9a-f]{32}$/);
  assert.equal(r.state, 'pending');
  assert.match(r.proof, new RegExp(`TXT _formation.shop.example.com "${r.token}"`));
  assert.match(r.proof, /CNAME shop.example.com → hello\.dev\.formation\.local/);
  const again = await addDomain(state, dev, 'hello', 'shop.example.com');
  assert.equal(again.created, false);
  assert.equal(again.token, r.token);
});

test('refused: not a domain, someone else’s instance, a domain verified for another owner', async () => {
  const { store, state } = world();
  for (const bad of ['localhost', 'a..b', 'shop_example.com', '-x.com', '']) {
    await assert.rejects(addDomain(state, dev, 'hello', bad), { code: 'CLI_USAGE' }, bad);
  }
  await assert.rejects(addDomain(state, dev, 'theirs', 'x.example.com'), { code: 'INSTANCE_NOT_FOUND' });
  const r = await addDomain(state, other, 'theirs', 'taken.example.com');
  const claim = (await state.domains()).find((d) => d.name === 'taken.example.com')?.claim as string;
  store.author(node, 'dns.verified', { claim, name: r.name, method: 'txt' });
  await assert.rejects(addDomain(state, dev, 'hello', 'taken.example.com'), { code: 'CONFLICT' });
  await assert.rejects(addDomain(state, dev, 'hello', 'in.dev.formation.local'), { code: 'STATE_OP_INVALID' });
});

test('verify waits for the node’s verification; times out with the record to publish; rm releases', async () => {
  const { store, state } = world();
  const r = await addDomain(state, dev, 'hello', 'shop.example.com');
  await assert.rejects(waitVerified(state, dev, 'shop.example.com', 0), {
    code: 'TIMEOUT',
    message: /did not see the proof/,
  });
  await assert.rejects(waitVerified(state, dev, 'none.example.com', 0), { code: 'NOT_FOUND' });
  const claim = (await state.domains())[0]?.claim as string;
  const waiting = waitVerified(state, dev, 'shop.example.com', 10_000, 20);
  setTimeout(() => store.author(node, 'dns.verified', { claim, name: r.name, method: 'txt' }), 50);
  const d = await waiting;
  assert.equal(d.state, 'verified');
  assert.equal(await removeDomain(state, dev, 'shop.example.com'), 'shop.example.com');
  assert.equal((await state.domains()).length, 0);
  await assert.rejects(removeDomain(state, dev, 'shop.example.com'), { code: 'NOT_FOUND' });
  await assert.rejects(removeDomain(state, other, 'taken.example.com'), { code: 'NOT_FOUND' });
  assert.equal(normalizeDomain('A.B.'), 'a.b');
});

test('list: a lapsed domain says since when, why (made inert) and what to publish; verify times out naming the lapse', async () => {
  const { store, state } = world();
  const r = await addDomain(state, dev, 'hello', 'shop.example.com');
  const claim = (await state.domains()).find((d) => d.name === r.name)?.claim as string;
  store.author(node, 'dns.verified', { claim, name: r.name, method: 'txt' });
  const reason = 'the resolver shows TXT "\\u001b[2J"; no CNAME; expected TXT _formation.shop.example.com';
  const at = Date.now() + 1000;
  store.author(node, 'dns.lapsed', { claim, name: r.name, reason }, at);
  const rows = (await state.domains()).filter((d) => d.owner === dev.publicKey);
  assert.equal(rows[0]?.state, 'lapsed');
  const plain = { green: String, red: String, yellow: String };
  const lines = domainLines(rows, await state.instances(), plain);
  assert.equal(lines[0], 'shop.example.com  hello  lapsed  0 node(s)');
  assert.equal(lines[1], `  not served since ${new Date(at).toISOString()}: 1 node(s) no longer see the proof`);
  assert.equal(lines[2], `  why: ${reason}`);
  assert.match(lines[3] ?? '', new RegExp(`publish TXT _formation.shop.example.com "${r.token}" again`));
  for (const l of lines) assert.ok(!l.includes('\u001b'), l);
  // A hostile node's view with raw control characters is made inert too.
  const hostile = [{ ...rows[0]!, lapsedBy: [{ node: 'n', reason: 'x\u001b]52;c;AAAA\u0007', ts: at }] }];
  const out = domainLines(hostile, [], plain).join('\n');
  assert.ok(!out.includes('\u001b') && !out.includes('\u0007'), out);
  await assert.rejects(waitVerified(state, dev, r.name, 50, 10), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'TIMEOUT');
    assert.match(e.message, /lapsed \(the resolver shows/);
    return true;
  });
});
