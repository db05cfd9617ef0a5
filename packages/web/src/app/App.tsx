import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect } from 'react';
import { ApiError, api } from './api.ts';
import { ErrorBox } from './components/ErrorBox.tsx';
import { Link } from './components/Link.tsx';
import { short } from './format.ts';
import { FormpackPage } from './pages/FormpackPage.tsx';
import { FormpacksPage } from './pages/FormpacksPage.tsx';
import { InstancePage } from './pages/InstancePage.tsx';
import { InstancesPage } from './pages/InstancesPage.tsx';
import { NetworkPage } from './pages/NetworkPage.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { navigate, usePath } from './router.ts';

/** The dashboard's routing and layout: the sign-in page, or the signed-in frame around one page. */
export function App() {
  const path = usePath();
  if (path === '/login') return <SignIn />;
  return <SignedIn path={path} />;
}

function SignedIn({ path }: { path: string }) {
  const qc = useQueryClient();
  const session = useQuery({ queryKey: ['session'], queryFn: api.session, staleTime: 60_000 });
  const signOut = useMutation({
    mutationFn: api.signOut,
    onSettled: () => {
      qc.clear();
      navigate('/login');
    },
  });
  useEffect(() => {
    if (session.error instanceof ApiError && session.error.status === 401) navigate('/login', true);
  }, [session.error]);
  if (path === '/' || path === '') {
    navigate('/instances', true);
    return null;
  }
  const section = path.split('/')[1] ?? '';
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header>
        <span className="brand">Formation</span>
        <nav aria-label="Main">
          <Link to="/instances" current={section === 'instances'}>
            Instances
          </Link>
          <Link to="/formpacks" current={section === 'formpacks'}>
            Formpacks
          </Link>
          <Link to="/network" current={section === 'network'}>
            Network
          </Link>
        </nav>
        <span className="who">
          {session.data ? (
            <>
              Signed in as <code title={session.data.address}>{short(session.data.address)}</code>
              {session.data.canManage ? null : <span className="dim"> (read-only)</span>}{' '}
              <button type="button" onClick={() => signOut.mutate()}>
                Sign out
              </button>
            </>
          ) : null}
        </span>
      </header>
      {/* biome-ignore lint/correctness/useUniqueElementIds: one <main> per page, target of the skip link */}
      <main id="main">
        {session.isError && !(session.error instanceof ApiError && session.error.status === 401) ? (
          <ErrorBox error={session.error} what="your session" />
        ) : null}
        {session.data ? <Page path={path} /> : session.isPending ? <p>Loading…</p> : null}
      </main>
    </>
  );
}

function Page({ path }: { path: string }) {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'instances' && parts[1]) return <InstancePage id={decodeURIComponent(parts[1])} />;
  if (parts[0] === 'instances') return <InstancesPage />;
  if (parts[0] === 'formpacks' && parts[1]) return <FormpackPage id={decodeURIComponent(parts[1])} />;
  if (parts[0] === 'formpacks') return <FormpacksPage />;
  if (parts[0] === 'network') return <NetworkPage />;
  return (
    <>
      <h1>Not found</h1>
      <p>
        No page at <code>{path}</code>. <Link to="/instances">Go to your instances</Link>.
      </p>
    </>
  );
}
