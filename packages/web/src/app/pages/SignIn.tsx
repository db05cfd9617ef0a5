import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { api } from '../api.ts';
import { Command } from '../components/Command.tsx';
import { ErrorBox } from '../components/ErrorBox.tsx';
import { Section } from '../components/Section.tsx';
import { navigate } from '../router.ts';

export function SignIn() {
  const qc = useQueryClient();
  // The link may be pasted into a tab already on /login: then only the fragment changes.
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onHash = () => setHash(location.hash);
    window.addEventListener('hashchange', onHash);
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  const token = new URLSearchParams(hash.slice(1)).get('token');
  const signIn = useMutation({
    mutationFn: (t: string) => api.signIn(t),
    onSuccess: async () => {
      await qc.invalidateQueries();
      navigate('/instances', true);
    },
  });
  const started = useRef<string | null>(null);
  useEffect(() => {
    if (token && started.current !== token) {
      started.current = token;
      // The token leaves the address bar at once: it works only once anyway.
      history.replaceState(null, '', '/login');
      signIn.mutate(token);
    }
  }, [token, signIn]);
  return (
    // biome-ignore lint/correctness/useUniqueElementIds: one <main> per page, target of the skip link
    <main className="signin" id="main">
      <h1>Formation dashboard</h1>
      {signIn.isPending ? <p aria-live="polite">Signing in…</p> : null}
      {signIn.isError ? <ErrorBox error={signIn.error} what="your session" /> : null}
      <Section title="Sign in">
        <p>
          The dashboard never sees your private key. On the machine that holds your developer key (from{' '}
          <code>form kit init</code>), run:
        </p>
        <Command cmd="form web login" label="sign in" />
        <p>
          and open the link it prints. The link works once and expires after 5 minutes. The session may then build,
          ship, start, stop, delete and commit for you (your CLI signs a delegation to it, never your key); add{' '}
          <code>--read-only</code> for a session that only looks.
        </p>
      </Section>
    </main>
  );
}
