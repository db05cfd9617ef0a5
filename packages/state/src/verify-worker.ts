// Worker thread of VerifyPool: verifies a slice of signatures, writes 1/0 per check after slot 0,
// then sets slot 0 and wakes the waiting thread.
import { parentPort } from 'node:worker_threads';
import { verifyOpSignature } from './op.ts';
import type { SigCheck } from './verify-pool.ts';

parentPort?.on('message', (msg: { checks: SigCheck[]; shared: Int32Array }) => {
  const { checks, shared } = msg;
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i] as SigCheck;
    shared[i + 1] = verifyOpSignature(c.author, c.bytes, c.sig) ? 1 : 0;
  }
  Atomics.store(shared, 0, 1);
  Atomics.notify(shared, 0);
});
