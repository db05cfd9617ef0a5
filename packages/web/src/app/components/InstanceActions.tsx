import type { InstanceInfo } from '@formation/interface/web-api';
import { useState } from 'react';
import { api } from '../api.ts';
import { navigate } from '../router.ts';
import { useSession } from '../session.ts';
import { ActionButton } from './ActionButton.tsx';
import { Command } from './Command.tsx';
import { ReplicasInput } from './ReplicasInput.tsx';

export function InstanceActions({ i, hasLocal }: { i: InstanceInfo; hasLocal: boolean }) {
  const session = useSession();
  if (!session.data?.canManage) {
    return (
      <>
        <p>
          This session is read-only. Run these where your developer key is (or sign in without <code>--read-only</code>
          ):
        </p>
        {i.desired === 'running' ? (
          <Command cmd={`form manage stop ${i.name}`} label="stop" />
        ) : (
          <Command cmd={`form manage start ${i.name}`} label="start" />
        )}
        <Command cmd={`form commit ${i.name}`} label="commit" />
        <Command cmd={`form manage delete ${i.name}`} label="delete" />
      </>
    );
  }
  return (
    <>
      <div className="actions">
        {i.desired === 'running' ? (
          <ActionButton key="stop" label="Stop" run={() => api.stop(i.id)} />
        ) : (
          <ActionButton key="start" label="Start" run={() => api.start(i.id)} />
        )}
        <ActionButton
          label="Commit"
          disabled={!hasLocal}
          run={async () => {
            const r = await api.commit(i.id);
            return {
              message: `Committed revision ${r.revision} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, guest frozen ${r.frozenMs} ms)`,
            };
          }}
        />
        <ScaleControl i={i} />
        <ActionButton
          label="Delete"
          danger
          confirm={`Delete ${i.name}? Every replica's VM and disk is removed.`}
          run={() => api.remove(i.id)}
          onDone={() => navigate('/instances')}
        />
      </div>
      <p className="dim">
        Done by this session under the delegation your <code>form web login</code> signed. Commit saves the disk of this
        node's replica{hasLocal ? '' : ' (none runs here)'} as a new revision for every replica. The same with the CLI:{' '}
        <code>form manage stop|start|delete {i.name}</code>, <code>form commit {i.name}</code>.
      </p>
    </>
  );
}

/** The replica count, with a Scale button (nodes start or stop replicas to match). */
function ScaleControl({ i }: { i: InstanceInfo }) {
  const [replicas, setReplicas] = useState(i.replicas);
  return (
    <div className="scale">
      <ReplicasInput value={replicas} onChange={setReplicas} size={3} />{' '}
      <ActionButton label="Scale" disabled={replicas === i.replicas} run={() => api.scale(i.id, replicas)} />
    </div>
  );
}
