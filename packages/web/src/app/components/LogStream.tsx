import type { LogLineInfo } from '@formation/interface/web-api';
import { useEffect, useRef, useState } from 'react';
import { api } from '../api.ts';
import { usePoll } from '../poll.ts';
import { ErrorBox } from './ErrorBox.tsx';

/** How many lines the page keeps (older ones scroll away; `form logs --since` reads further back). */
const KEEP = 1000;

/**
 * The logs stream of this node's replica: the last lines first, then new ones every 1.5 s (the server
 * reads them from the VMM as `form logs -f` does, inert). Text only: React escapes it.
 */
export function LogStream({ id }: { id: string }) {
  const [lines, setLines] = useState<LogLineInfo[]>([]);
  const [loaded, setLoaded] = useState(false);
  const ref = useRef<HTMLPreElement>(null);
  const error = usePoll(
    id,
    1500,
    (id) => {
      let after: number | undefined; // the VMM's cursor: only lines after it come back
      return async () => {
        const r = await api.logs(id, after);
        after = r.lastSeq;
        return r;
      };
    },
    (r) => {
      if (r.entries.length) setLines((old) => [...old, ...r.entries].slice(-KEEP));
      setLoaded(true);
    },
  );
  const last = lines[lines.length - 1]?.seq;
  useEffect(() => {
    if (last !== undefined && ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [last]);
  const time = (t: number) => new Date(t).toISOString().slice(11, 19);
  return (
    <>
      {error ? <ErrorBox error={error} what="the logs" /> : null}
      <pre
        className="console logs"
        ref={ref}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: the log must scroll by keyboard
        tabIndex={0}
        role="log"
        aria-label="Log lines of this node's replica (new lines every 1.5 s)"
      >
        {lines.map((l) => `${time(l.t)} ${l.src} ${l.line}\n`).join('') ||
          (loaded ? 'No log lines yet.' : error ? '' : 'Loading…')}
      </pre>
    </>
  );
}
