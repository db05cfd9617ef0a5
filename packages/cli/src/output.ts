import { FormError, isFormError } from '@formation/interface';
import pc from 'picocolors';

/** Exit codes: 0 ok, 1 the thing checked failed (e.g. invalid Formfile), 2 usage or runtime error. */
export const EXIT = { ok: 0, failed: 1, error: 2 } as const;

/** Print a FormError (or any error) for people: message, then the hint. Never a stack trace unless FORM_DEBUG. */
export function printError(err: unknown, json = false): void {
  const fe = isFormError(err)
    ? (err as FormError)
    : new FormError('INTERNAL', `Unexpected error: ${(err as Error)?.message ?? String(err)}`, {
        hint: 'This is a bug in form; rerun with FORM_DEBUG=1 and report the output.',
      });
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, ...fe.toJSON() })}\n`);
  } else {
    process.stderr.write(`${pc.red('error')}: ${fe.message}\n`);
    if (fe.hint) process.stderr.write(`${pc.cyan('hint')}: ${fe.hint}\n`);
  }
  if (process.env.FORM_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
}

/** Print one JSON value on stdout (machine output). */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Run a command body: errors become a printed message and exit code 2. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | undefined>) {
  return async (...args: A): Promise<void> => {
    const opts = args.find((a) => a && typeof a === 'object' && !Array.isArray(a)) as { json?: boolean } | undefined;
    try {
      const code = await fn(...args);
      process.exitCode = code ?? EXIT.ok;
    } catch (err) {
      printError(err, opts?.json === true);
      process.exitCode = EXIT.error;
    }
  };
}

type CommandBody = (...args: never[]) => Promise<number | undefined>;

/**
 * `action` for a command body kept in src/actions/: its module (and what it imports) loads only when the
 * command runs, so registering every command for `form --help` stays cheap.
 * @example .action(lazyAction(() => import('../actions/manage.ts'), 'list'))
 */
export function lazyAction<K extends string, M extends { [P in K]: CommandBody }>(load: () => Promise<M>, name: K) {
  return action(async (...args: unknown[]) => (await load())[name](...(args as never[])));
}
