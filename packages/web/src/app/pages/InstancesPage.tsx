import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { api } from '../api.ts';
import { Command } from '../components/Command.tsx';
import { Link } from '../components/Link.tsx';
import { QueryState } from '../components/QueryState.tsx';
import { ReplicasInput } from '../components/ReplicasInput.tsx';
import { Section } from '../components/Section.tsx';
import { Status } from '../components/Status.tsx';
import { short } from '../format.ts';

export function InstancesPage() {
  const q = useQuery({ queryKey: ['instances'], queryFn: api.instances, refetchInterval: 2000 });
  const [dir, setDir] = useState('examples/hello-server');
  const [replicas, setReplicas] = useState(1);
  return (
    <>
      <h1>Instances</h1>
      <QueryState q={q} what="your instances" loading="Loading instances…" />
      {q.data && q.data.length === 0 ? <p>You have no instances yet. Ship one with the command below.</p> : null}
      {q.data && q.data.length > 0 ? (
        <table>
          <caption>Your instances (refreshed every 2 s)</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Replicas</th>
              <th scope="col">DNS name</th>
              <th scope="col">Desired</th>
            </tr>
          </thead>
          <tbody>
            {q.data.map((i) => (
              <tr key={i.id} data-instance={i.name}>
                <td>
                  <Link to={`/instances/${i.id}`}>{i.name}</Link>
                  <div className="dim">{short(i.id, 12)}</div>
                </td>
                <td>
                  <Status status={i.status} reason={i.reason} />
                </td>
                <td>
                  {i.running}/{i.wanted}
                </td>
                <td>{i.dnsName ?? '—'}</td>
                <td>{i.desired}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <Section title="Ship a Formpack">
        <p>
          Build and ship from this dashboard on the <Link to="/formpacks">Formpacks</Link> page, or with the CLI where
          your build directory is:
        </p>
        <div className="form-row">
          <label>
            Build directory <input value={dir} onChange={(e) => setDir(e.target.value)} />
          </label>
          <ReplicasInput value={replicas} onChange={setReplicas} />
        </div>
        <Command cmd={`form pack ship ${dir || '.'} --replicas ${replicas}`} label="ship" />
      </Section>
    </>
  );
}
