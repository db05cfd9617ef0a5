import type { InstanceInfo } from '@formation/interface/web-api';
import { useQuery } from '@tanstack/react-query';
import { api } from '../api.ts';
import { Command } from './Command.tsx';
import { ErrorBox } from './ErrorBox.tsx';

/** The lock state of this node's replica's /data, and how to unlock it (only the developer's CLI holds the key). */
export function DataDisk({ i }: { i: InstanceInfo }) {
  const q = useQuery({ queryKey: ['disk', i.id], queryFn: () => api.disk(i.id), refetchInterval: 10_000 });
  return (
    <>
      {q.isError ? <ErrorBox error={q.error} what="the data disk state" /> : null}
      {q.data ? (
        <p className="disk">
          <strong className={`disk-${q.data.state}`}>{q.data.state}</strong> — {q.data.detail}
        </p>
      ) : null}
      {q.data?.state === 'locked' ? (
        <>
          <p>
            The key exists only where you ran <code>form disk unlock</code> (never on a node, never here). Unlock it
            there — <code>--watch</code> keeps unlocking replicas that restart:
          </p>
          <Command cmd={`form disk unlock ${i.name} --watch`} label="unlock the data disk" />
        </>
      ) : null}
    </>
  );
}
