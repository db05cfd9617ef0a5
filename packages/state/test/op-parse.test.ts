// The store's pure parts (op-parse.ts, op-refs.ts, api-problem.ts), without a store: parsing an op
// off the wire, the deps a new op must cite, and the API's refusals judged against a ViewState.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { apiProblem } from '../src/api-problem.ts';
import { createOp } from '../src/index.ts';
import { parseOp, parseUnverified } from '../src/op-parse.ts';
import { refsFor } from '../src/op-refs.ts';
import { ViewState } from '../src/views.ts';
import { instanceBody, key, nodeBody } from './helpers.ts';

const dev = key(9);
const other = key(8);
const n1 = key(1);

describe('parseOp', () => {
  const op = createOp(dev, 'account.update', { name: 'ada' }, [], 1000);
  test('a good op parses to a clean copy with its hash', () => {
    const p = parseOp({ ...op });
    assert.ok(!('code' in p));
    assert.deepEqual(p.op, op);
    assert.ok(p.size > 0);
  });
  const cases: Array<[string, unknown, string]> = [
    ['not an object', [], 'op must be a JSON object'],
    ['unknown field', { ...op, extra: 1 }, 'unknown field extra'],
    ['bad version', { ...op, v: 2 }, 'v must be 1'],
    ['bad author', { ...op, author: 'ab' }, 'author must be a compressed secp256k1 public key'],
    ['unsorted deps', { ...op, deps: ['b'.repeat(64), 'a'.repeat(64)] }, 'deps must be sorted and unique'],
    ['unknown kind', { ...op, kind: 'nope' }, 'unknown kind "nope"'],
    ['negative ts', { ...op, ts: -1 }, 'ts must be a non-negative integer'],
    ['wrong hash', { ...op, hash: 'c'.repeat(64) }, 'hash mismatch'],
  ];
  for (const [name, input, reason] of cases) {
    test(`refused: ${name}`, () => {
      const p = parseUnverified(input);
      assert.ok('code' in p);
      assert.equal(p.code, 'STATE_OP_INVALID');
      assert.ok(p.reason.startsWith(reason), p.reason);
    });
  }
  test('a tampered body fails the signature check with its hash', () => {
    const p = parseOp({ ...op, hash: undefined, body: { name: 'eve' } });
    assert.ok('code' in p);
    assert.equal(p.code, 'AUTH_BAD_SIGNATURE');
    assert.match(p.hash, /^[0-9a-f]{64}$/);
  });
});

describe('refsFor and apiProblem over a ViewState', () => {
  const v = new ViewState('formation.test');
  const reg = createOp(n1, 'node.register', nodeBody(1), [], 1000);
  const create = createOp(dev, 'instance.create', { id: 'i1', ...instanceBody('web') }, [], 1001);
  const claim = createOp(n1, 'instance.claim', { instanceId: 'i1' }, [create.hash, reg.hash], 1002);
  v.apply(reg, 0);
  v.apply(create, 0);
  v.apply(claim, 1);

  test('refsFor cites the create, the claim or the registration', () => {
    assert.deepEqual(refsFor(v, dev.publicKey, 'instance.update', { instanceId: 'i1' }), [create.hash]);
    assert.deepEqual(refsFor(v, n1.publicKey, 'instance.health', { instanceId: 'i1' }), [claim.hash]);
    assert.deepEqual(refsFor(v, n1.publicKey, 'formnet.allocate', {}), [reg.hash]);
    assert.deepEqual(refsFor(v, dev.publicKey, 'instance.update', { instanceId: 'unknown' }), []);
    assert.deepEqual(refsFor(v, dev.publicKey, 'account.update', {}), []);
  });

  test('apiProblem: a name another owner holds is a conflict; the owner itself may reuse it', () => {
    const theirs = createOp(other, 'instance.create', { id: 'i2', ...instanceBody('web') }, [], 1003);
    const e = apiProblem(v, theirs);
    assert.equal(e?.code, 'CONFLICT');
    assert.match(e?.message ?? '', /another owner holds the name web/);
    assert.equal(apiProblem(v, createOp(dev, 'instance.create', { id: 'i3', ...instanceBody('web') }, [], 1004)), null);
  });

  test("apiProblem: a custom domain under the network's domain is invalid", () => {
    const op = createOp(dev, 'dns.claim', { name: 'x.formation.test', instanceId: 'i1', token: 't' }, [], 1005);
    assert.equal(apiProblem(v, op)?.code, 'STATE_OP_INVALID');
    assert.equal(apiProblem(v, null), null);
  });
});
