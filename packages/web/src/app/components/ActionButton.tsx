import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { ErrorBox } from './ErrorBox.tsx';

/**
 * A button that runs one action, shows that it runs, and reports the result or the error (as clearly
 * as the CLI would). With `confirm`, the first press asks, a second press does it.
 */
export function ActionButton({
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
