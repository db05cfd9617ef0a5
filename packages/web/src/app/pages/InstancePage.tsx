import type { InstanceInfo } from '@formation/interface/web-api';
import { useQuery } from '@tanstack/react-query';
import { api } from '../api.ts';
import { Console } from '../components/Console.tsx';
import { DataDisk } from '../components/DataDisk.tsx';
import { InstanceActions } from '../components/InstanceActions.tsx';
import { Link } from '../components/Link.tsx';
import { LogStream } from '../components/LogStream.tsx';
import { QueryState } from '../components/QueryState.tsx';
import { ReplicaPlots } from '../components/ReplicaPlots.tsx';
import { Section } from '../components/Section.tsx';
import { Status } from '../components/Status.tsx';
import { short } from '../format.ts';

export function InstancePage({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['instance', id], queryFn: () => api.instance(id), refetchInterval: 2000 });
  const i = q.data;
  return (
    <>
      <p>
        <Link to="/instances">← All instances</Link>
      </p>
      <h1>{i ? `Instance ${i.name}` : 'Instance'}</h1>
      <QueryState q={q} what={`instance ${id}`} />
      {i ? <InstanceDetail i={i} /> : null}
    </>
  );
}

function InstanceDetail({ i }: { i: InstanceInfo }) {
  const hasLocal = i.replicaSet.some((r) => r.local);
  return (
    <>
      <dl className="facts">
        <dt>Status</dt>
        <dd>
          <Status status={i.status} reason={i.reason} />
        </dd>
        <dt>ID</dt>
        <dd>
          <code>{i.id}</code>
        </dd>
        <dt>Replicas running</dt>
        <dd>
          {i.running}/{i.wanted} (desired: {i.desired})
        </dd>
        <dt>DNS name</dt>
        <dd>{i.dnsName ?? '—'}</dd>
        <dt>Formpack</dt>
        <dd>
          <Link to={`/formpacks/${i.formpackId}`}>{short(i.formpackId, 16)}</Link>
        </dd>
        <dt>Resources</dt>
        <dd>
          {i.resources.vcpu} vCPU, {i.resources.memMiB} MiB, {i.resources.diskGiB} GiB
        </dd>
        <dt>Revision</dt>
        <dd>{i.revision}</dd>
      </dl>
      <table>
        <caption>Replicas</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">State</th>
            <th scope="col">Health</th>
            <th scope="col">Formnet IP</th>
            <th scope="col">DNS name</th>
            <th scope="col">Revision</th>
            <th scope="col">Reason</th>
          </tr>
        </thead>
        <tbody>
          {i.replicaSet.map((r) => (
            <tr key={r.node}>
              <td>
                {r.nodeName ?? short(r.nodeAddress)}
                {r.local ? <span className="dim"> (this node)</span> : null}
              </td>
              <td>{r.state}</td>
              <td>
                <span className={`health health-${r.health}`}>{r.health}</span>
              </td>
              <td>{r.formnetIp ?? '—'}</td>
              <td>{r.dnsName ?? '—'}</td>
              <td>{r.revision ?? '—'}</td>
              <td>{r.reason ?? ''}</td>
            </tr>
          ))}
          {i.replicaSet.length === 0 ? (
            <tr>
              <td colSpan={7}>No node has claimed a replica yet.</td>
            </tr>
          ) : null}
        </tbody>
      </table>
      <Section title="Actions">
        <InstanceActions i={i} hasLocal={hasLocal} />
      </Section>
      <Section title="Encrypted data disk">
        {hasLocal ? (
          <DataDisk i={i} />
        ) : (
          <p>
            No replica runs on this node: ask with <code>form disk status {i.name}</code>.
          </p>
        )}
      </Section>
      <Section title="Logs">
        {hasLocal ? (
          <LogStream id={i.id} />
        ) : (
          <p>
            No replica runs on this node: read them with <code>form logs {i.name}</code>.
          </p>
        )}
      </Section>
      <Section title="Metrics">
        {hasLocal ? (
          <ReplicaPlots id={i.id} />
        ) : (
          <p>
            No replica runs on this node: <code>form manage get metrics {i.name}</code>.
          </p>
        )}
      </Section>
      <Section title="Serial console">
        {hasLocal ? <Console id={i.id} /> : <p>No replica runs on this node, so its console is not readable here.</p>}
      </Section>
    </>
  );
}
