import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef } from 'react';
import { api } from '../api.ts';
import { ErrorBox } from './ErrorBox.tsx';

export function Console({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['console', id], queryFn: () => api.console(id), refetchInterval: 2000 });
  const ref = useRef<HTMLPreElement>(null);
  const output = q.data?.output;
  useEffect(() => {
    if (output !== undefined && ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [output]);
  return (
    <>
      {q.isError ? <ErrorBox error={q.error} what="the console" /> : null}
      <pre
        className="console"
        ref={ref}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: the log must scroll by keyboard
        tabIndex={0}
        role="log"
        aria-label="Serial console output (refreshed every 2 s)"
      >
        {output ?? (q.isPending ? 'Loading…' : '')}
      </pre>
    </>
  );
}
