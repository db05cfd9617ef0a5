import type { FormfileDiagnostic } from './diagnostic.ts';

/**
 * Hide USER passwd values in a source line, keeping its length so a caret below still lines up.
 */
export function redactSourceLine(line: string): string {
  return line.replace(
    /(\bpasswd\s*[:=]\s*)("(?:[^"\\]|\\.)*"?|'[^']*'?|\S+)/gi,
    (_m, key: string, value: string) => key + '*'.repeat(value.length),
  );
}

/**
 * Format diagnostics like a compiler: `FILE:LINE:COL: message`, then the source line (passwords hidden)
 * and a caret under the column. Whole-file diagnostics print as `FILE: message`.
 *
 * @example
 * process.stderr.write(formatDiagnostics(errors, { file: 'Formfile', text }));
 */
export function formatDiagnostics(list: readonly FormfileDiagnostic[], opts: { file: string; text: string }): string {
  const lines = opts.text.replace(/^\ufeff/, '').split(/\r?\n/);
  let out = '';
  for (const d of list) {
    if (d.line === undefined) {
      out += `${opts.file}: ${d.message} [${d.code}]\n`;
      continue;
    }
    const col = d.column ?? 1;
    out += `${opts.file}:${d.line}:${col}: ${d.message} [${d.code}]\n`;
    const src = lines[d.line - 1];
    if (src !== undefined) {
      const shown = redactSourceLine(src).replace(/\t/g, ' ');
      out += `  ${d.line} | ${shown}\n`;
      out += `  ${' '.repeat(String(d.line).length)} | ${' '.repeat(Math.max(0, col - 1))}^\n`;
    }
  }
  return out;
}
