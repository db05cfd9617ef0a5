import type { FormpackInfo } from '@formation/interface/web-api';
import { useQuery } from '@tanstack/react-query';
import { api } from '../api.ts';
import { BuildPanel } from '../components/BuildPanel.tsx';
import { Link } from '../components/Link.tsx';
import { QueryState } from '../components/QueryState.tsx';
import { Section } from '../components/Section.tsx';
import { bytes, short } from '../format.ts';

export function FormpacksPage() {
  const q = useQuery({ queryKey: ['formpacks'], queryFn: api.formpacks, refetchInterval: 5000 });
  return (
    <>
      <h1>Formpacks</h1>
      <QueryState q={q} what="your Formpacks" loading="Loading Formpacks…" />
      {q.data && q.data.length === 0 ? <p>You have built no Formpacks yet.</p> : null}
      {q.data && q.data.length > 0 ? <FormpackTable packs={q.data} /> : null}
      <Section title="Build a Formpack">
        <BuildPanel />
      </Section>
    </>
  );
}

function FormpackTable({ packs }: { packs: FormpackInfo[] }) {
  return (
    <table>
      <caption>Your Formpacks</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">ID</th>
          <th scope="col">Size</th>
          <th scope="col">Published</th>
          <th scope="col">Built</th>
        </tr>
      </thead>
      <tbody>
        {packs.map((p) => (
          <tr key={p.id}>
            <td>
              <Link to={`/formpacks/${p.id}`}>{p.name}</Link>
            </td>
            <td>
              <code>{short(p.id, 16)}</code>
            </td>
            <td>{bytes(p.size)}</td>
            <td>{p.published ? 'yes' : 'no'}</td>
            <td>{p.createdAt ? new Date(p.createdAt).toLocaleString() : '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
