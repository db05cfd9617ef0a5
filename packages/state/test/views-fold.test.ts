// The fold behind the views (views-fold.ts, views-render.ts; pure): the registers' order, and that
// folding the same ops in any order renders the same views.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canonicalJson, createOp, type Op } from '../src/index.ts';
import { byKey, first, foldOp, lww, newFoldState, rankLess } from '../src/views-fold.ts';
import { renderViews } from '../src/views-render.ts';
import { instanceBody, key, nodeBody } from './helpers.ts';

describe('registers', () => {
  test('lww: the higher (ts, hash) wins, whatever the order', () => {
    const a = lww(undefined, 5, 'aa', 'a');
    const b = lww(a, 5, 'bb', 'b');
    assert.equal(b.value, 'b');
    assert.equal(lww(b, 5, 'aa', 'a').value, 'b');
    assert.equal(lww(b, 4, 'zz', 'z').value, 'b');
    assert.equal(lww(b, 6, '00', 'c').value, 'c');
  });
  test('first: the lower (depth, hash) wins, whatever the order', () => {
    const a = first(undefined, 2, 'bb', 'b');
    assert.equal(first(a, 2, 'aa', 'a').value, 'a');
    assert.equal(first(a, 3, '00', 'x').value, 'b');
    assert.equal(first(a, 1, 'zz', 'z').value, 'z');
  });
  test('rankLess and byKey', () => {
    assert.equal(rankLess({ depth: 1, hash: 'b' }, { depth: 2, hash: 'a' }), true);
    assert.equal(rankLess({ depth: 2, hash: 'a' }, { depth: 2, hash: 'b' }), true);
    assert.equal(rankLess({ depth: 2, hash: 'b' }, { depth: 2, hash: 'b' }), false);
    assert.deepEqual(['c', 'a', 'b'].sort(byKey((s) => s)), ['a', 'b', 'c']);
  });
});

describe('foldOp + renderViews', () => {
  const n1 = key(1);
  const n2 = key(2);
  const dev = key(9);
  const reg1 = createOp(n1, 'node.register', nodeBody(1), [], 1000);
  const reg2 = createOp(n2, 'node.register', nodeBody(2), [], 1001);
  const create = createOp(dev, 'instance.create', { id: 'i1', ...instanceBody('web') }, [], 1002);
  const claim = createOp(n1, 'instance.claim', { instanceId: 'i1' }, [create.hash, reg1.hash], 1003);
  const name1 = createOp(n1, 'node.update', { name: 'one' }, [reg1.hash], 1004);
  const name2 = createOp(n1, 'node.update', { name: 'uno' }, [reg1.hash], 1005);
  const depth = new Map<string, number>([
    [reg1.hash, 0],
    [reg2.hash, 0],
    [create.hash, 0],
    [claim.hash, 1],
    [name1.hash, 1],
    [name2.hash, 1],
  ]);
  const render = (ops: Op[]) => {
    const s = newFoldState();
    for (const op of ops) assert.equal(foldOp(s, op, depth.get(op.hash) as number), undefined);
    return renderViews(s, 'formation.test', undefined);
  };
  const ops = [reg1, reg2, create, claim, name1, name2];

  test('any order gives the same views', () => {
    const want = canonicalJson(render(ops));
    assert.equal(canonicalJson(render([...ops].reverse())), want);
    assert.equal(canonicalJson(render([name2, claim, reg2, create, name1, reg1])), want);
    // Idempotent: an op folded twice changes nothing.
    assert.equal(canonicalJson(render([...ops, ...ops])), want);
  });

  test('what it renders', () => {
    const v = render(ops);
    assert.equal(v.network.policy, 'legacy-open');
    assert.deepEqual(
      v.nodes.map((n) => n.name),
      [n1.publicKey, n2.publicKey].sort().map((pk) => (pk === n1.publicKey ? 'uno' : null)),
    );
    const i = v.instances.find((x) => x.id === 'i1');
    assert.ok(i);
    assert.equal(i.owner, dev.publicKey);
    assert.deepEqual(
      i.replicaSet.map((r) => [r.node, r.assigned]),
      [[n1.publicKey, true]],
    );
    assert.ok(v.dns.some((d) => d.name === 'i1.formation.test' && d.instanceId === 'i1'));
  });
});
