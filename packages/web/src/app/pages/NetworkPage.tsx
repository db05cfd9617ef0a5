import { useQuery } from '@tanstack/react-query';
import { api } from '../api.ts';
import { Graph } from '../components/Graph.tsx';
import { Plot } from '../components/Plot.tsx';
import { QueryState } from '../components/QueryState.tsx';
import { Section } from '../components/Section.tsx';
import { short } from '../format.ts';

export function NetworkPage() {
  const q = useQuery({ queryKey: ['network'], queryFn: api.network, refetchInterval: 5000 });
  const n = q.data;
  return (
    <>
      <h1>Network</h1>
      <QueryState q={q} what="the network" />
      {n ? (
        <>
          <Section title="Formnet">
            <Graph net={n} />
          </Section>
          <table>
            <caption>Nodes</caption>
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">Formnet range</th>
                <th scope="col">Capacity</th>
                <th scope="col">Allocated</th>
                <th scope="col">Heartbeat</th>
              </tr>
            </thead>
            <tbody>
              {n.nodes.map((node) => (
                <tr key={node.id}>
                  <td>
                    {node.name ?? short(node.address)}
                    {node.self ? <span className="dim"> (this node)</span> : null}
                  </td>
                  <td>{node.formnetRange}</td>
                  <td>
                    {node.capacity.vcpu} vCPU, {node.capacity.memMiB} MiB
                  </td>
                  <td>{node.used ? `${node.used.vcpu} vCPU, ${node.used.memMiB} MiB` : '—'}</td>
                  <td>
                    {node.lastHeartbeat
                      ? `${node.status ?? ''} ${new Date(node.lastHeartbeat).toLocaleTimeString()}`
                      : '—'}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <Section title="Load over time">
            {n.nodes.map((node) => (
              <Plot key={node.id} node={node} samples={n.samples.filter((s) => s.node === node.id)} />
            ))}
          </Section>
        </>
      ) : null}
    </>
  );
}
