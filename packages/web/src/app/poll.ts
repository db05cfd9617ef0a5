import { useEffect, useRef, useState } from 'react';

/**
 * Polls while the component shows: a read now, the next one `intervalMs` after each answer or failure
 * (so reads never overlap, unlike a fixed interval, and a slow node is not asked faster than it answers).
 * `start(key)` makes the reader once per `key`, so it may keep a cursor; answers that arrive after the
 * component went away or `key` changed are dropped. Returns the last failure, or null once a read
 * succeeds again.
 *
 * @example
 * const error = usePoll(id, 3000, (id) => () => api.metrics(id), (s) => setSamples((old) => [...old, s]));
 */
export function usePoll<T>(
  key: string,
  intervalMs: number,
  start: (key: string) => () => Promise<T>,
  onData: (data: T) => void,
): unknown {
  const [error, setError] = useState<unknown>(null);
  // The callbacks of the latest render: a new closure each render must not restart the polling.
  const latest = useRef({ start, onData });
  latest.current = { start, onData };
  useEffect(() => {
    const read = latest.current.start(key);
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const data = await read();
        if (stop) return;
        latest.current.onData(data);
        setError(null);
      } catch (err) {
        if (!stop) setError(err);
      }
      if (!stop) timer = setTimeout(poll, intervalMs);
    };
    void poll();
    return () => {
      stop = true;
      if (timer) clearTimeout(timer);
    };
  }, [key, intervalMs]);
  return error;
}
