// Pure parts of the aos support: the /graphql subset, outbox planning, and owner items for
// checkpoint/restore (wrong action, wrong process, stale, replayed → refused with coded errors).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, it } from 'node:test';
import { ArweaveSigner, createData } from '@dha-team/arbundles';
import { NonceCache } from '@formation/identity';
import { isFormError } from '@formation/interface';
import fc from 'fast-check';
import { answerTransactions, type KnownTransaction, parseTransactionsQuery } from '../src/graphql.ts';
import { planOutbox, spawnedNotice } from '../src/outbox.ts';
import { sameAddress, verifyOwnerItem } from '../src/owner-auth.ts';

const coded = (code: string, re: RegExp) => (err: unknown) =>
  isFormError(err) && err.code === code && re.test(err.message);

describe('graphql subset', () => {
  const known: KnownTransaction[] = [
    {
      id: 'p1',
      owner: 'alice',
      tags: [
        { name: 'Type', value: 'Process' },
        { name: 'Name', value: 'one' },
      ],
    },
    {
      id: 'p2',
      owner: 'alice',
      tags: [
        { name: 'Type', value: 'Process' },
        { name: 'Name', value: 'two' },
      ],
    },
    { id: 'm1', owner: 'node', tags: [{ name: 'Type', value: 'Module' }] },
  ];
  const ids = (r: Record<string, unknown>) =>
    (r as { data: { transactions: { edges: Array<{ node: { id: string } }> } } }).data.transactions.edges.map(
      (e) => e.node.id,
    );

  it("answers aoconnect's lookup by id and aos's lookup by owner + Name, with variables", () => {
    const byId = parseTransactionsQuery(
      'query GetTransactions ($transactionIds: [ID!]!) { transactions(ids: $transactionIds) { edges { node { tags { name value } } } } }',
      {
        transactionIds: ['m1'],
      },
    );
    assert.deepEqual(ids(answerTransactions(byId, known)), ['m1']);
    const byName = parseTransactionsQuery(
      'query ($owners: [String!]!) { transactions(first: 10, sort: HEIGHT_DESC, owners: $owners, tags: [{ name: "Type", values: ["Process"] }, { name: "Name", values: ["two"] }]) { edges { node { id } } } }',
      { owners: ['alice'] },
    );
    assert.deepEqual(ids(answerTransactions(byName, known)), ['p2']);
    const paged = answerTransactions(
      parseTransactionsQuery('{ transactions(owners: ["alice"], first: 1) { edges { cursor } } }'),
      known,
    );
    assert.deepEqual(ids(paged), ['p1']);
    assert.deepEqual(
      ids(
        answerTransactions(
          parseTransactionsQuery('{ transactions(owners: ["alice"], after: "p1") { edges { cursor } } }'),
          known,
        ),
      ),
      ['p2'],
    );
  });

  it('refuses other queries and malformed arguments with BAD_REQUEST', () => {
    assert.throws(
      () => parseTransactionsQuery('{ blocks { edges { node { id } } } }'),
      coded('BAD_REQUEST', /only the `transactions` field/),
    );
    assert.throws(
      () => parseTransactionsQuery('{ transactions(ids: ["a" { x } }'),
      coded('BAD_REQUEST', /Cannot answer GraphQL query/),
    );
    assert.throws(
      () => parseTransactionsQuery('{ transactions(ids: [1, 2]) { x } }'),
      coded('BAD_REQUEST', /ids must be a list of strings/),
    );
    assert.throws(
      () => parseTransactionsQuery('{ transactions(tags: [{ name: "A" }]) { x } }'),
      coded('BAD_REQUEST', /tag filter/),
    );
    assert.throws(
      () => parseTransactionsQuery(`{ transactions(ids: ${'['.repeat(20)}) }`),
      coded('BAD_REQUEST', /nest too deep|not closed/),
    );
    assert.throws(() => parseTransactionsQuery('x'.repeat(20_001)), coded('BAD_REQUEST', /at most 20,000/));
  });
});

describe('graphql subset: fuzzed', () => {
  it('any query text and variables either parse or are refused with BAD_REQUEST, never anything else', () => {
    const pieces = fc.constantFrom(
      'transactions',
      '(',
      ')',
      '[',
      ']',
      '{',
      '}',
      ':',
      ',',
      '"',
      '$v',
      'ids',
      'tags',
      'name',
      'values',
      '"x"',
      '1',
      ' ',
      '\\',
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.array(pieces).map((a) => a.join('')),
        ),
        fc.jsonValue(),
        (q, v) => {
          try {
            parseTransactionsQuery(q, { v } as Record<string, unknown>);
          } catch (err) {
            assert.ok(isFormError(err) && err.code === 'BAD_REQUEST', String(err));
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('outbox planning', () => {
  const result = {
    messages: [{ target: 'B', action: 'Ping', data: 'x', tags: { Action: 'Ping', Reference: '1' } }],
    spawns: [{ module: 'M', data: 'code', tags: { Name: 'kid', Reference: '2' } }],
    output: '',
    data: '',
  };
  it('tags pushed messages, derives stable ids, and plans spawns with a Spawned notice', () => {
    const a = planOutbox('A', 'msg1', result);
    const b = planOutbox('A', 'msg1', result);
    assert.deepEqual(a, b, 'deterministic');
    assert.notEqual(a.messages[0]?.id, planOutbox('A', 'msg2', result).messages[0]?.id);
    assert.deepEqual(a.messages[0]?.params, { Reference: '1', 'From-Process': 'A', 'Pushed-For': 'msg1' });
    assert.equal(a.messages[0]?.action, 'Ping');
    const child = a.spawns[0];
    assert.ok(child);
    assert.deepEqual(
      child.tags.map((t) => t.name),
      ['Name', 'Reference', 'From-Process'],
    );
    const notice = spawnedNotice('A', child);
    assert.deepEqual(
      [notice.target, notice.action, notice.params.Process, notice.params['X-Reference']],
      ['A', 'Spawned', child.id, '2'],
    );
  });
  it('a failed result sends nothing', () => {
    assert.deepEqual(planOutbox('A', 'm', { ...result, error: 'boom' }), { messages: [], spawns: [] });
  });
});

describe('owner items for checkpoint/restore', () => {
  const jwk = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
  const signer = new ArweaveSigner(jwk as never);
  const item = async (tags: Array<{ name: string; value: string }>, data = '') => {
    const d = createData(data, signer, { tags });
    await d.sign(signer);
    return Buffer.from(d.getRaw());
  };
  const now = Date.now();
  const base = (action: string, extra: Array<{ name: string; value: string }> = []) => [
    { name: 'Action', value: action },
    { name: 'Process', value: 'P' },
    { name: 'Timestamp', value: String(now) },
    ...extra,
  ];

  it('accepts a fresh item once, with the Arweave address', async () => {
    const nonces = new NonceCache({ since: 0 });
    const raw = await item(base('Checkpoint'));
    const ok = verifyOwnerItem(raw, 'P', 'Checkpoint', nonces, now);
    assert.equal(ok.address.length, 43);
    assert.throws(() => verifyOwnerItem(raw, 'P', 'Checkpoint', nonces, now), coded('AUTH_FORBIDDEN', /already used/));
    const r = verifyOwnerItem(
      await item(base('Restore'), JSON.stringify({ sha256: 'ab'.repeat(32) })),
      'P',
      'Restore',
      nonces,
      now,
    );
    assert.equal(r.sha256, 'ab'.repeat(32));
  });

  it('refuses the wrong action, another process, a stale Timestamp, a restore without a checkpoint, a forged item', async () => {
    const nonces = new NonceCache({ since: 0 });
    assert.throws(
      () => verifyOwnerItem(Buffer.alloc(0), 'P', 'Checkpoint', nonces, now),
      (e: unknown) => isFormError(e),
    );
    const cp = await item(base('Checkpoint'));
    assert.throws(
      () => verifyOwnerItem(cp, 'P', 'Restore', nonces, now),
      coded('AUTH_FORBIDDEN', /Action is "Checkpoint"/),
    );
    assert.throws(
      () => verifyOwnerItem(cp, 'Q', 'Checkpoint', nonces, now),
      coded('AUTH_FORBIDDEN', /for process "P"/),
    );
    assert.throws(
      () => verifyOwnerItem(cp, 'P', 'Checkpoint', nonces, now + 6 * 60_000),
      coded('AUTH_FORBIDDEN', /Timestamp/),
    );
    const noSha = await item(base('Restore'));
    assert.throws(
      () => verifyOwnerItem(noSha, 'P', 'Restore', nonces, now),
      coded('BAD_REQUEST', /names no Checkpoint/),
    );
    const forged = Buffer.from(cp);
    forged[10] = (forged[10] ?? 0) ^ 1; // a byte of the signature
    assert.throws(() => verifyOwnerItem(forged, 'P', 'Checkpoint', nonces, now), coded('AUTH_BAD_SIGNATURE', /./));
  });

  it('compares Ethereum addresses without case, AO addresses exactly', () => {
    assert.equal(sameAddress('0xAbC', '0xabc'), true);
    assert.equal(sameAddress('AbC', 'abc'), false);
  });
});
