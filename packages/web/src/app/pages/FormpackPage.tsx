import { useQuery } from '@tanstack/react-query';
import { api } from '../api.ts';
import { Link } from '../components/Link.tsx';
import { QueryState } from '../components/QueryState.tsx';
import { Section } from '../components/Section.tsx';
import { ShipHere } from '../components/ShipForm.tsx';
import { bytes } from '../format.ts';

export function FormpackPage({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['formpack', id], queryFn: () => api.formpack(id) });
  const p = q.data;
  return (
    <>
      <p>
        <Link to="/formpacks">← All Formpacks</Link>
      </p>
      <h1>{p ? `Formpack ${p.name}` : 'Formpack'}</h1>
      <QueryState q={q} what={`Formpack ${id}`} />
      {p ? (
        <>
          <dl className="facts">
            <dt>ID</dt>
            <dd>
              <code>{p.id}</code>
            </dd>
            <dt>Size</dt>
            <dd>{bytes(p.size)}</dd>
            <dt>Measurement</dt>
            <dd>
              {p.manifest?.measurement ? (
                <code>{p.manifest.measurement}</code>
              ) : (
                'needs the manifest (built on another node)'
              )}
            </dd>
            <dt>Resources</dt>
            <dd>
              {p.manifest
                ? `${p.manifest.resources.vcpu} vCPU, ${p.manifest.resources.memMiB} MiB, ${p.manifest.resources.diskGiB} GiB`
                : '—'}
            </dd>
            <dt>Instances</dt>
            <dd>
              {p.instances.length === 0
                ? 'none'
                : p.instances.map((i) => (
                    <span key={i.id}>
                      <Link to={`/instances/${i.id}`}>{i.name}</Link>{' '}
                    </span>
                  ))}
            </dd>
          </dl>
          <table>
            <caption>Artifacts</caption>
            <thead>
              <tr>
                <th scope="col">Artifact</th>
                <th scope="col">sha256</th>
                <th scope="col">Size</th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(p.sha256s).map(([k, sha]) => (
                <tr key={k}>
                  <td>{k}</td>
                  <td>
                    <code>{sha}</code>
                  </td>
                  <td>{p.manifest?.artifacts[k] ? bytes(p.manifest.artifacts[k].bytes) : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {p.manifest ? (
            <Section title="Formfile (normalized)">
              {/* biome-ignore lint/a11y/noNoninteractiveTabindex: scrollable by keyboard */}
              <pre className="json" tabIndex={0}>
                {JSON.stringify(p.manifest.formfile, null, 2)}
              </pre>
              <p>
                Kernel command line: <code>{p.manifest.cmdline}</code>
              </p>
            </Section>
          ) : (
            <p>This Formpack was built on another node: its manifest is not stored here.</p>
          )}
          <Section title="Ship it">
            <ShipHere local={p.local} formpackId={p.id} name={p.name} />
          </Section>
        </>
      ) : null}
    </>
  );
}
