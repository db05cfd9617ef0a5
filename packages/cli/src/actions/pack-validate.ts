import { isAbsolute, relative } from 'node:path';
import type { FormfileDiagnostic } from '@formation/formfile';
import { FormError, type FormfileSpec, isFormError } from '@formation/interface';
import pc from 'picocolors';
import { EXIT, printError } from '../output.ts';

interface PackValidateOptions {
  file?: string;
  json?: boolean;
}

/** `form pack validate`: exit 0 valid, 1 invalid, 2 usage or I/O error (same JSON shape with --json). */
export async function validateCommand(dir: string, opts: PackValidateOptions): Promise<void> {
  try {
    process.exitCode = await packValidate(dir, opts);
  } catch (err) {
    // I/O and usage problems: one clear message, exit 2, same JSON shape when asked for JSON.
    if (opts.json) {
      const fe = isFormError(err) ? err : new FormError('INTERNAL', `Unexpected error: ${(err as Error).message}`);
      printJsonLine({ ok: false, formfile: null, errors: [{ code: fe.code, message: fe.message }] });
    } else {
      printError(err);
    }
    process.exitCode = EXIT.error;
  }
}

async function packValidate(dir: string, opts: PackValidateOptions): Promise<number> {
  const { formatDiagnostics, loadFormfile, normalizeFormfile, parseFormfile, redactFormfile, validateBuildContext } =
    await import('@formation/formfile');
  const loaded = await loadFormfile(dir, opts.file ?? 'Formfile');
  const parsed = parseFormfile(loaded.text);
  const contextErrors = await validateBuildContext(parsed, loaded.dir, parsed.copyPositions);
  const errors = sortByPosition([...parsed.errors, ...contextErrors]);
  const spec = errors.length === 0 ? parsed.spec : null;
  if (opts.json) {
    printJsonLine({
      ok: spec !== null,
      formfile: spec ? (JSON.parse(normalizeFormfile(redactFormfile(spec))) as FormfileSpec) : null,
      errors: errors.map(wireError),
    });
    return spec ? EXIT.ok : EXIT.failed;
  }
  const shown = displayPath(loaded.path);
  if (!spec) {
    process.stderr.write(formatDiagnostics(errors, { file: shown, text: loaded.text }));
    const n = errors.length;
    process.stderr.write(`${pc.red(`${n} error${n === 1 ? '' : 's'}`)} in ${shown}\n`);
    return EXIT.failed;
  }
  process.stdout.write(`${pc.green('ok')} ${shown}: ${summary(spec)}\n`);
  return EXIT.ok;
}

/** The JSON error shape: line and column only when the error has a position. */
function wireError(d: FormfileDiagnostic): FormfileDiagnostic {
  const out: FormfileDiagnostic = { code: d.code, message: d.message };
  if (d.line !== undefined) {
    out.line = d.line;
    out.column = d.column ?? 1;
  }
  return out;
}

function sortByPosition(list: FormfileDiagnostic[]): FormfileDiagnostic[] {
  const key = (d: FormfileDiagnostic) => (d.line ?? Number.MAX_SAFE_INTEGER) * 1e6 + (d.column ?? 0);
  return list
    .map((d, i) => ({ d, i }))
    .sort((a, b) => key(a.d) - key(b.d) || a.i - b.i)
    .map((x) => x.d);
}

function summary(spec: FormfileSpec): string {
  const parts = [
    `${spec.name}`,
    `${spec.vcpu} vCPU`,
    `${spec.memMiB} MiB`,
    `${spec.diskGiB} GiB disk`,
    `${spec.users.length} user${spec.users.length === 1 ? '' : 's'}`,
  ];
  if (spec.install.length) parts.push(`${spec.install.length} package${spec.install.length === 1 ? '' : 's'}`);
  if (spec.expose.length) parts.push(`port${spec.expose.length === 1 ? '' : 's'} ${spec.expose.join(', ')}`);
  if (spec.gpu) parts.push('GPU');
  return parts.join(', ');
}

function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
