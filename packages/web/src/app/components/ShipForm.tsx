import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api } from '../api.ts';
import { navigate } from '../router.ts';
import { useSession } from '../session.ts';
import { Command } from './Command.tsx';
import { ErrorBox } from './ErrorBox.tsx';
import { ReplicasInput } from './ReplicasInput.tsx';

/** Ship a Formpack built on this node: replica count, then the instance page. */
export function ShipForm({ formpackId }: { formpackId: string }) {
  const [replicas, setReplicas] = useState(1);
  const qc = useQueryClient();
  const ship = useMutation({
    mutationFn: () => api.ship(formpackId, { replicas }),
    onSuccess: async (r) => {
      await qc.invalidateQueries();
      navigate(`/instances/${r.id}`);
    },
  });
  return (
    <div className="form-row">
      <ReplicasInput value={replicas} onChange={setReplicas} />
      <button type="button" onClick={() => ship.mutate()} disabled={ship.isPending}>
        {ship.isPending ? 'Shipping…' : 'Ship'}
      </button>
      {ship.isError ? <ErrorBox error={ship.error} what="this Formpack" verb="ship" /> : null}
    </div>
  );
}

export function ShipHere({ local, formpackId, name }: { local: boolean; formpackId: string; name: string }) {
  const session = useSession();
  if (session.data?.canManage && local) return <ShipForm formpackId={formpackId} />;
  return (
    <>
      <p>
        {session.data?.canManage
          ? 'This Formpack was built on another node: ship it from there, or with the CLI:'
          : 'This session is read-only. Ship with the CLI:'}
      </p>
      <Command cmd={`form pack ship <dir of ${name}>`} label="ship" />
    </>
  );
}
