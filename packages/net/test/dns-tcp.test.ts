// The per-connection limits of DNS over TCP (issue 19) on a stream we control: a client that never
// reads its answers (the write side never drains, as a full kernel buffer would look) is read no
// further and cut off once it keeps asking; pipelining and oversized queries close the connection;
// the query cap ends it after the last answer. dns-limits.test.ts runs the cap on a real socket.
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { serveDnsTcp } from '../src/dns-tcp.ts';

/** A duplex whose written bytes are never consumed when `stuck` (the peer stopped reading). */
function peer(stuck: boolean) {
  const written: Buffer[] = [];
  const d = new Duplex({
    highWaterMark: 1024,
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      if (!stuck) cb(); // stuck: the callback never comes, so writableLength only grows
    },
  });
  return { d, written };
}

const frame = (n: number) => {
  const b = Buffer.alloc(2 + n, 0x41);
  b.writeUInt16BE(n);
  return b;
};
const answer = Buffer.alloc(400, 0x42); // ≈ a 512-byte-capped answer
const limits = { maxQueryBytes: 512, queriesPerConnection: 1_000_000, maxUnreadBytes: 4096 };
const tick = () => new Promise((r) => setImmediate(r));

function serve(d: Duplex, l = limits) {
  const ev = { answered: 0, closed: [] as string[], errors: 0 };
  serveDnsTcp(d, async () => answer, l, {
    answered: () => ev.answered++,
    closed: (why) => ev.closed.push(why),
    error: () => ev.errors++,
  });
  return ev;
}

describe('DNS over TCP per-connection limits', () => {
  test('a reading client is answered query after query', async () => {
    const { d, written } = peer(false);
    const ev = serve(d);
    for (let i = 0; i < 50; i++) {
      d.push(frame(40));
      await tick();
    }
    assert.equal(ev.answered, 50);
    assert.equal(written.length, 50);
    assert.equal(d.destroyed, false);
  });

  test('a client that never reads: answers stop once maxUnreadBytes are pending, then it is cut off', async () => {
    const { d } = peer(true);
    const ev = serve(d);
    let asked = 0;
    while (!d.destroyed && asked < 10_000) {
      d.push(frame(40)); // one question per turn, never pipelined
      asked++;
      await tick();
    }
    assert.equal(d.destroyed, true, 'a client that never reads was never cut off');
    // 4096 unread bytes / 402 per answer: the 11th answer crosses the limit; then 1,538 bytes of
    // questions may wait (2 + 3 × 512), 42 each: cut off within ~40 more questions.
    assert.ok(ev.answered <= 11, `answered ${ev.answered}`);
    assert.ok(asked <= ev.answered + 40, `asked ${asked}`);
    assert.deepEqual(ev.closed, ['abuse']);
    assert.ok(d.writableLength <= 4096 + 402);
  });

  test('pipelining more than a few queries ahead closes the connection', async () => {
    const { d } = peer(false);
    const ev = serve(d);
    d.push(Buffer.concat(Array.from({ length: 40 }, () => frame(40)))); // 1,680 bytes at once
    await tick();
    assert.equal(d.destroyed, true);
    assert.deepEqual(ev.closed, ['abuse']);
  });

  test('a query over maxQueryBytes or of length 0 closes the connection unanswered', async () => {
    for (const n of [513, 0]) {
      const { d } = peer(false);
      const ev = serve(d);
      const b = Buffer.alloc(2);
      b.writeUInt16BE(n);
      d.push(b);
      await tick();
      assert.equal(d.destroyed, true, `length ${n}`);
      assert.equal(ev.answered, 0);
    }
  });

  test('after queriesPerConnection answers the last is written and the connection ends', async () => {
    const { d, written } = peer(false);
    const ev = serve(d, { ...limits, queriesPerConnection: 3 });
    for (let i = 0; i < 5; i++) {
      d.push(frame(40));
      await tick();
    }
    assert.equal(ev.answered, 3);
    assert.equal(written.length, 3);
    assert.equal(d.writableEnded, true);
    assert.deepEqual(ev.closed, ['cap']);
  });

  test('a responder that declines (not a query we answer) closes the connection', async () => {
    const { d } = peer(false);
    let answered = 0;
    serveDnsTcp(d, async () => undefined, limits, {
      answered: () => answered++,
      closed: () => {},
      error: () => {},
    });
    d.push(frame(40));
    await tick();
    await tick();
    assert.equal(d.destroyed, true);
    assert.equal(answered, 0);
  });
});
