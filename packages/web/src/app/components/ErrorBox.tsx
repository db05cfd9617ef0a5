import { ApiError } from '../api.ts';

export function ErrorBox({ error, what, verb = 'load' }: { error: unknown; what: string; verb?: string }) {
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
