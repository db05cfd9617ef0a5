import type { Op, StateStore } from '@formation/state';

/**
 * Runs `run` on a timer every `everyMs` and soon after accepted ops (those `wants`, default all): once
 * per turn of the event loop however many arrive together (a sync applies ops in a batch), so a burst
 * costs one run. `run` must not throw. Returns the function that stops both.
 *
 * @example const stop = followState(store, rebuild, { everyMs: 2000 }); rebuild(); … stop();
 */
export function followState(
  store: Pick<StateStore, 'onAccepted'>,
  run: () => void,
  o: { everyMs: number; wants?: (op: Op) => boolean },
): () => void {
  let pending = false;
  const off = store.onAccepted((op) => {
    if (pending || (o.wants && !o.wants(op))) return;
    pending = true;
    setImmediate(() => {
      pending = false;
      run();
    });
  });
  const timer = setInterval(run, o.everyMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    off();
  };
}
