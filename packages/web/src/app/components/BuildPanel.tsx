import { BUILD_PROGRESS_STEPS } from '@formation/interface/build-steps';
import type { BuildLogEvent, BuildStarted } from '@formation/interface/web-api';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { ApiError, api, followBuild } from '../api.ts';
import { short } from '../format.ts';
import { useSession } from '../session.ts';
import { contextFromDirectory, SKIPPED_DIRS, tarBlob } from '../tar.ts';
import { Command } from './Command.tsx';
import { ErrorBox } from './ErrorBox.tsx';
import { Link } from './Link.tsx';
import { ShipForm } from './ShipForm.tsx';

type Picked = { label: string; blob: Blob; type: 'application/x-tar' | 'application/gzip' };

/** Build from a picked directory or archive, with the live log and progress; then ship the result. */
export function BuildPanel() {
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
  const doneIdx =
    end?.status === 'done'
      ? BUILD_PROGRESS_STEPS.length
      : (BUILD_PROGRESS_STEPS as readonly string[]).indexOf(current ?? '');
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
            <progress max={BUILD_PROGRESS_STEPS.length} value={Math.max(0, doneIdx)}>
              {Math.max(0, doneIdx)} of {BUILD_PROGRESS_STEPS.length} steps
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
