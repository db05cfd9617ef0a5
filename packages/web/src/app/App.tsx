import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type MouseEvent, type ReactNode, useEffect, useId, useRef, useState } from 'react';
import type {
  BuildLogEvent,
  BuildStarted,
  DeployStatus,
  FormpackInfo,
  InstanceInfo,
  MetricSample,
  NetworkInfo,
  NodeSummary,
} from '../api-types.ts';
import { ApiError, api, followBuild } from './api.ts';
import { navigate, usePath } from './router.ts';
import { contextFromDirectory, SKIPPED_DIRS, tarBlob } from './tar.ts';

export function App() {
  const path = usePath();
  if (path === '/login') return <SignIn />;
  return <SignedIn path={path} />;
}

function Link({ to, children, current }: { to: string; children: ReactNode; current?: boolean }) {
  const onClick = (e: MouseEvent) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={onClick} aria-current={current ? 'page' : undefined}>
      {children}
    </a>
  );
}

function Section({ title, children }: { title: string; children: ReactNode }) {
  const id = useId();
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

function ErrorBox({ error, what, verb = 'load' }: { error: unknown; what: string; verb?: string }) {
  const e = error instanceof ApiError ? error : null;
  return (
    <div className="error" role="alert">
      <p>
        <strong>error</strong>: Cannot {verb} {what}: {e ? e.message : String((error as Error)?.message ?? error)}
        {e ? <span className="code"> ({e.code})</span> : null}
      </p>
      {e?.hint ? (
        <p>
          <strong>hint</strong>: {e.hint}
        </p>
      ) : null}
    </div>
  );
}

function Command({ cmd, label }: { cmd: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div className="command">
      <code>{cmd}</code>
      <button
        type="button"
        onClick={() => {
          void navigator.clipboard?.writeText(cmd).then(
            () => setCopied(true),
            () => setCopied(false),
          );
        }}
      >
        {copied ? 'Copied' : 'Copy'}
        <span className="sr-only"> command: {label}</span>
      </button>
    </div>
  );
}

/** The signed-in session (cached): who, until when, and whether it may act (delegation). */
function useSession() {
  return useQuery({ queryKey: ['session'], queryFn: api.session, staleTime: 60_000 });
}

/**
 * A button that runs one action, shows that it runs, and reports the result or the error (as clearly
 * as the CLI would). With `confirm`, the first press asks, a second press does it.
 */
function ActionButton({
  label,
  run,
  confirm,
  danger,
  disabled,
  onDone,
}: {
  label: string;
  run: () => Promise<{ message?: string } | unknown>;
  confirm?: string;
  danger?: boolean;
  disabled?: boolean;
  onDone?: () => void;
}) {
  const qc = useQueryClient();
  const [asking, setAsking] = useState(false);
  const m = useMutation({
    mutationFn: run,
    onSuccess: async () => {
      setAsking(false);
      await qc.invalidateQueries();
      onDone?.();
    },
  });
  const message = (m.data as { message?: string } | undefined)?.message;
  return (
    <div className="action">
      {asking ? (
        <fieldset className="confirm">
          <legend className="sr-only">Confirm: {label}</legend>
          <span>{confirm}</span>{' '}
          <button type="button" className={danger ? 'danger' : ''} onClick={() => m.mutate()} disabled={m.isPending}>
            {m.isPending ? `${label}…` : `Yes, ${label.toLowerCase()}`}
          </button>{' '}
          <button type="button" onClick={() => setAsking(false)} disabled={m.isPending}>
            Cancel
          </button>
        </fieldset>
      ) : (
        <button
          type="button"
          className={danger ? 'danger' : ''}
          disabled={disabled || m.isPending}
          onClick={() => (confirm ? setAsking(true) : m.mutate())}
        >
          {m.isPending ? `${label}…` : label}
        </button>
      )}
      {m.isError ? <ErrorBox error={m.error} what="" verb={label.toLowerCase()} /> : null}
      {m.isSuccess && message ? <output className="dim"> {message}</output> : null}
    </div>
  );
}

// ---------------------------------------------------------------- sign-in

function SignIn() {
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

// ---------------------------------------------------------------- layout

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

function short(s: string, n = 10): string {
  return s.length > n + 4 ? `${s.slice(0, n)}…` : s;
}

function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}

function Status({ status, reason }: { status: DeployStatus; reason: string | null }) {
  const text = status === 'FAILURE' ? `FAILURE { reason: ${reason ?? 'unknown'} }` : status;
  return <span className={`status status-${status.toLowerCase()}`}>{text}</span>;
}

// ---------------------------------------------------------------- instances

function InstancesPage() {
  const q = useQuery({ queryKey: ['instances'], queryFn: api.instances, refetchInterval: 2000 });
  const [dir, setDir] = useState('examples/hello-server');
  const [replicas, setReplicas] = useState(1);
  return (
    <>
      <h1>Instances</h1>
      {q.isError ? <ErrorBox error={q.error} what="your instances" /> : null}
      {q.isPending ? <p>Loading instances…</p> : null}
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

function InstancePage({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['instance', id], queryFn: () => api.instance(id), refetchInterval: 2000 });
  const i = q.data;
  return (
    <>
      <p>
        <Link to="/instances">← All instances</Link>
      </p>
      <h1>{i ? `Instance ${i.name}` : 'Instance'}</h1>
      {q.isError ? <ErrorBox error={q.error} what={`instance ${id}`} /> : null}
      {q.isPending ? <p>Loading…</p> : null}
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
      <Section title="Serial console">
        {hasLocal ? <Console id={i.id} /> : <p>No replica runs on this node, so its console is not readable here.</p>}
      </Section>
    </>
  );
}

function InstanceActions({ i, hasLocal }: { i: InstanceInfo; hasLocal: boolean }) {
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

/** A labelled replica-count field, kept within what the state accepts (1–16). */
function ReplicasInput({ value, onChange, size }: { value: number; onChange: (n: number) => void; size?: number }) {
  return (
    <label>
      Replicas{' '}
      <input
        type="number"
        min={1}
        max={16}
        value={value}
        onChange={(e) => onChange(Math.max(1, Math.min(16, Number(e.target.value) || 1)))}
        size={size}
      />
    </label>
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

/** The lock state of this node's replica's /data, and how to unlock it (only the developer's CLI holds the key). */
function DataDisk({ i }: { i: InstanceInfo }) {
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

function Console({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['console', id], queryFn: () => api.console(id), refetchInterval: 2000 });
  const ref = useRef<HTMLPreElement>(null);
  const output = q.data?.output;
  useEffect(() => {
    if (output !== undefined && ref.current) ref.current.scrollTop = ref.current.scrollHeight;
  }, [output]);
  return (
    <>
      {q.isError ? <ErrorBox error={q.error} what="the console" /> : null}
      <pre
        className="console"
        ref={ref}
        // biome-ignore lint/a11y/noNoninteractiveTabindex: the log must scroll by keyboard
        tabIndex={0}
        role="log"
        aria-label="Serial console output (refreshed every 2 s)"
      >
        {output ?? (q.isPending ? 'Loading…' : '')}
      </pre>
    </>
  );
}

// ---------------------------------------------------------------- formpacks

function FormpacksPage() {
  const q = useQuery({ queryKey: ['formpacks'], queryFn: api.formpacks, refetchInterval: 5000 });
  return (
    <>
      <h1>Formpacks</h1>
      {q.isError ? <ErrorBox error={q.error} what="your Formpacks" /> : null}
      {q.isPending ? <p>Loading Formpacks…</p> : null}
      {q.data && q.data.length === 0 ? <p>You have built no Formpacks yet.</p> : null}
      {q.data && q.data.length > 0 ? <FormpackTable packs={q.data} /> : null}
      <Section title="Build a Formpack">
        <BuildPanel />
      </Section>
    </>
  );
}

const BUILD_STEPS = ['context', 'base', 'packages', 'rootfs', 'configure', 'run', 'disk', 'boot-files', 'manifest'];

type Picked = { label: string; blob: Blob; type: 'application/x-tar' | 'application/gzip' };

/** Build from a picked directory or archive, with the live log and progress; then ship the result. */
function BuildPanel() {
  const session = useSession();
  const qc = useQueryClient();
  const dirInput = useRef<HTMLInputElement>(null);
  useEffect(() => {
    // Not in React's types: lets the file picker choose a whole directory.
    dirInput.current?.setAttribute('webkitdirectory', '');
  }, []);
  const [picked, setPicked] = useState<Picked | null>(null);
  const [pickError, setPickError] = useState<string | null>(null);
  const [formfile, setFormfile] = useState('Formfile');
  const [started, setStarted] = useState<BuildStarted | null>(null);
  const [events, setEvents] = useState<BuildLogEvent[]>([]);
  const [end, setEnd] = useState<Extract<BuildLogEvent, { type: 'end' }> | null>(null);
  const logRef = useRef<HTMLPreElement>(null);
  const build = useMutation({
    mutationFn: async (p: Picked) => {
      setEvents([]);
      setEnd(null);
      setStarted(null);
      const b = await api.build(p.blob, p.type, formfile);
      setStarted(b);
      const e = await followBuild(b.buildId, (ev) => setEvents((prev) => [...prev, ev]));
      setEnd(e);
      await qc.invalidateQueries({ queryKey: ['formpacks'] });
      return b;
    },
  });
  useEffect(() => {
    if (events.length > 0 && logRef.current) logRef.current.scrollTop = logRef.current.scrollHeight;
  }, [events]);

  if (!session.data?.canManage) {
    return (
      <>
        <p>This session is read-only. Build where your developer key and the build directory are:</p>
        <Command cmd="form pack build <dir>" label="build" />
      </>
    );
  }
  const onDirectory = (files: FileList | null) => {
    setPickError(null);
    setPicked(null);
    if (!files || files.length === 0) return;
    const ctx = contextFromDirectory(files);
    if (!ctx.files.some((f) => f.path === formfile)) {
      setPickError(`The directory has no ${formfile} at its top level. Pick the directory that holds it.`);
      return;
    }
    const top = (files[0]?.webkitRelativePath ?? '').split('/')[0] || 'directory';
    setPicked({
      label: `${top}/ (${ctx.files.length} files${ctx.skipped ? `, ${ctx.skipped} in ${SKIPPED_DIRS.join('/')} skipped` : ''})`,
      blob: tarBlob(ctx.files),
      type: 'application/x-tar',
    });
  };
  const onArchive = (files: FileList | null) => {
    setPickError(null);
    setPicked(null);
    const f = files?.[0];
    if (!f) return;
    const gz = /\.(tgz|tar\.gz)$/i.test(f.name);
    if (!gz && !/\.tar$/i.test(f.name)) {
      setPickError(`${f.name} is not a .tar, .tar.gz or .tgz archive.`);
      return;
    }
    setPicked({ label: f.name, blob: f, type: gz ? 'application/gzip' : 'application/x-tar' });
  };
  const steps = events.filter((e): e is Extract<BuildLogEvent, { type: 'step' }> => e.type === 'step');
  const current = steps.at(-1)?.step;
  const cached = steps.some((e) => e.step === 'cached');
  const doneIdx = end?.status === 'done' ? BUILD_STEPS.length : BUILD_STEPS.indexOf(current ?? '');
  return (
    <>
      <p>
        Pick the directory that holds your Formfile (or a .tar / .tar.gz of it). The node builds it under your key (this
        session's delegation) and shows the build as it happens.
      </p>
      <div className="form-row">
        <label>
          Build directory <input ref={dirInput} type="file" onChange={(e) => onDirectory(e.target.files)} />
        </label>
        <label>
          or an archive <input type="file" accept=".tar,.tgz,.gz" onChange={(e) => onArchive(e.target.files)} />
        </label>
        <label>
          Formfile <input value={formfile} onChange={(e) => setFormfile(e.target.value || 'Formfile')} size={12} />
        </label>
      </div>
      {pickError ? (
        <div className="error" role="alert">
          <p>
            <strong>error</strong>: {pickError}
          </p>
        </div>
      ) : null}
      <p>
        <button type="button" disabled={!picked || build.isPending} onClick={() => picked && build.mutate(picked)}>
          {build.isPending ? 'Building…' : 'Build'}
        </button>{' '}
        {picked ? <span className="dim">{picked.label}</span> : null}
      </p>
      {build.isError ? <ErrorBox error={build.error} what="this build context" verb="build" /> : null}
      {started || build.isPending ? (
        <>
          <label className="progress">
            Build progress{' '}
            <progress max={BUILD_STEPS.length} value={Math.max(0, doneIdx)}>
              {Math.max(0, doneIdx)} of {BUILD_STEPS.length} steps
            </progress>{' '}
            <span aria-live="polite">
              {end
                ? end.status === 'done'
                  ? cached
                    ? 'done (already built: cached)'
                    : 'done'
                  : 'failed'
                : (current ?? (started ? 'queued' : 'uploading'))}
            </span>
          </label>
          <pre
            className="console build-log"
            ref={logRef}
            // biome-ignore lint/a11y/noNoninteractiveTabindex: the log must scroll by keyboard
            tabIndex={0}
            role="log"
            aria-label="Build log"
          >
            {events
              .map((e) =>
                e.type === 'step'
                  ? `==> ${e.step}${e.detail ? ` ${e.detail}` : ''} (${(e.elapsedMs / 1000).toFixed(1)} s)`
                  : e.type === 'log'
                    ? e.line
                    : `==> ${e.status}`,
              )
              .join('\n')}
          </pre>
        </>
      ) : null}
      {end?.status === 'failed' && end.error ? (
        <ErrorBox error={new ApiError(400, end.error)} what="the Formpack" verb="build" />
      ) : null}
      {end?.status === 'done' && started ? (
        <div className="built">
          <p>
            <output>
              Built <Link to={`/formpacks/${started.id}`}>{started.name}</Link> (<code>{short(started.id, 16)}</code>).
            </output>
          </p>
          <ShipForm formpackId={started.id} />
        </div>
      ) : null}
    </>
  );
}

/** Ship a Formpack built on this node: replica count, then the instance page. */
function ShipForm({ formpackId }: { formpackId: string }) {
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

function FormpackPage({ id }: { id: string }) {
  const q = useQuery({ queryKey: ['formpack', id], queryFn: () => api.formpack(id) });
  const p = q.data;
  return (
    <>
      <p>
        <Link to="/formpacks">← All Formpacks</Link>
      </p>
      <h1>{p ? `Formpack ${p.name}` : 'Formpack'}</h1>
      {q.isError ? <ErrorBox error={q.error} what={`Formpack ${id}`} /> : null}
      {q.isPending ? <p>Loading…</p> : null}
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

function ShipHere({ local, formpackId, name }: { local: boolean; formpackId: string; name: string }) {
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

// ---------------------------------------------------------------- network

function NetworkPage() {
  const q = useQuery({ queryKey: ['network'], queryFn: api.network, refetchInterval: 5000 });
  const n = q.data;
  return (
    <>
      <h1>Network</h1>
      {q.isError ? <ErrorBox error={q.error} what="the network" /> : null}
      {q.isPending ? <p>Loading…</p> : null}
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

function Graph({ net }: { net: NetworkInfo }) {
  const W = 640;
  const H = 300;
  const nodes = net.nodes;
  const others = net.peers.filter((p) => p.kind !== 'node');
  const ring = (i: number, count: number, r: number) => {
    const a = (2 * Math.PI * i) / Math.max(1, count) - Math.PI / 2;
    return count === 1 && r < 100 ? { x: W / 2, y: H / 2 } : { x: W / 2 + r * Math.cos(a), y: H / 2 + r * Math.sin(a) };
  };
  const nodePos = new Map(nodes.map((n, i) => [n.id, ring(i, nodes.length, nodes.length === 1 ? 0 : 90)]));
  const desc = `${nodes.length} node(s) and ${others.length} other formnet peer(s). Nodes form a full WireGuard mesh; other peers connect to every node.`;
  return (
    <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={desc} className="graph">
      <title>{desc}</title>
      {nodes.flatMap((a, i) =>
        nodes.slice(i + 1).map((b) => {
          const p = nodePos.get(a.id)!;
          const q = nodePos.get(b.id)!;
          return <line key={`${a.id}-${b.id}`} x1={p.x} y1={p.y} x2={q.x} y2={q.y} className="edge" />;
        }),
      )}
      {others.map((o, i) => {
        const p = ring(i, others.length, 135);
        return nodes.map((n) => {
          const q = nodePos.get(n.id)!;
          return <line key={`${o.publicKey}-${n.id}`} x1={p.x} y1={p.y} x2={q.x} y2={q.y} className="edge dashed" />;
        });
      })}
      {nodes.map((n) => {
        const p = nodePos.get(n.id)!;
        return (
          <g key={n.id}>
            <circle cx={p.x} cy={p.y} r={22} className={n.self ? 'node self' : 'node'} />
            <text x={p.x} y={p.y + 38} textAnchor="middle">
              {n.name ?? short(n.address)}
            </text>
          </g>
        );
      })}
      {others.map((o, i) => {
        const p = ring(i, others.length, 135);
        return (
          <g key={o.publicKey}>
            <rect x={p.x - 9} y={p.y - 9} width={18} height={18} className={`peer peer-${o.kind}`} />
            <text x={p.x} y={p.y + 24} textAnchor="middle">
              {o.label}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

function Plot({ node, samples }: { node: NodeSummary; samples: MetricSample[] }) {
  const W = 640;
  const H = 140;
  const pad = 28;
  if (samples.length < 2) {
    return <p>{node.name ?? short(node.address)}: collecting samples (one every few seconds)…</p>;
  }
  const t0 = samples[0]!.ts;
  const t1 = samples[samples.length - 1]!.ts;
  const x = (t: number) => pad + ((W - 2 * pad) * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v: number) => H - pad - (H - 2 * pad) * v;
  const line = (get: (s: MetricSample) => number | null) =>
    samples
      .filter((s) => get(s) !== null)
      .map((s, i) => `${i === 0 ? 'M' : 'L'}${x(s.ts).toFixed(1)},${y(get(s) ?? 0).toFixed(1)}`)
      .join(' ');
  const last = samples[samples.length - 1]!;
  const pct = (v: number | null) => (v === null ? 'n/a' : `${Math.round(v * 100)}%`);
  const label = `${node.name ?? node.address}: CPU allocated ${pct(last.cpuAllocated)}, memory allocated ${pct(last.memAllocated)}, host CPU ${pct(last.hostCpu)}, host memory ${pct(last.hostMem)}, over ${Math.round((t1 - t0) / 1000)} s`;
  return (
    <figure className="plot">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label}>
        <line x1={pad} y1={y(0)} x2={W - pad} y2={y(0)} className="axis" />
        <line x1={pad} y1={y(1)} x2={W - pad} y2={y(1)} className="axis dashed" />
        <text x={4} y={y(1) + 4}>
          100%
        </text>
        <text x={4} y={y(0) + 4}>
          0%
        </text>
        <path d={line((s) => s.cpuAllocated)} className="series cpu" />
        <path d={line((s) => s.memAllocated)} className="series mem" />
        <path d={line((s) => s.hostCpu)} className="series hostcpu" />
        <path d={line((s) => s.hostMem)} className="series hostmem" />
      </svg>
      <figcaption>
        {node.name ?? short(node.address)} — <span className="key cpu">CPU allocated</span>{' '}
        <span className="key mem">memory allocated</span> <span className="key hostcpu">host CPU load</span>{' '}
        <span className="key hostmem">host memory</span>. Now: {pct(last.cpuAllocated)} / {pct(last.memAllocated)} /{' '}
        {pct(last.hostCpu)} / {pct(last.hostMem)}
      </figcaption>
    </figure>
  );
}
