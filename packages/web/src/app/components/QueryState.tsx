import type { UseQueryResult } from '@tanstack/react-query';
import { ErrorBox } from './ErrorBox.tsx';

/**
 * What a page shows of its query besides the data: the error (as the CLI prints it) and a loading line
 * until the first answer. Pages render their data after it.
 */
export function QueryState({
  q,
  what,
  loading = 'Loading…',
}: {
  q: Pick<UseQueryResult, 'isError' | 'error' | 'isPending'>;
  /** What the page loads, for the error: "Cannot load <what>: …". */
  what: string;
  loading?: string;
}) {
  return (
    <>
      {q.isError ? <ErrorBox error={q.error} what={what} /> : null}
      {q.isPending ? <p>{loading}</p> : null}
    </>
  );
}
