import { HEALTHCHECK_DEFAULTS, type HealthcheckSpec, type HealthcheckTest } from '@formation/interface';
import type { FormfileErrorCode } from './diagnostic.ts';
import { parseExecForm } from './exec-form.ts';
import { tokenize } from './lexer.ts';
import { closest } from './suggest.ts';
import { parseWholeNumber } from './values.ts';

/** HEALTHCHECK options: their bounds (ms, or a count for retries) and why, shown in errors. */
export const HEALTHCHECK_OPTIONS = {
  interval: { key: 'intervalMs', min: 1_000, max: 3_600_000, why: 'checks run between every second and every hour' },
  timeout: {
    key: 'timeoutMs',
    min: 1_000,
    max: 300_000,
    why: 'a check may take between 1 second and 5 minutes (and no longer than the interval)',
  },
  retries: { key: 'retries', min: 1, max: 100, why: 'between 1 and 100 consecutive failures make a replica unhealthy' },
  'start-period': {
    key: 'startPeriodMs',
    min: 0,
    max: 3_600_000,
    why: 'failures in the first hour at most after boot may be ignored',
  },
} as const;
type OptionName = keyof typeof HEALTHCHECK_OPTIONS;
const OPTION_NAMES = Object.keys(HEALTHCHECK_OPTIONS) as OptionName[];

/** The check kinds, as written after the options. */
export const HEALTHCHECK_KINDS = ['CMD', 'HTTP', 'TCP', 'NONE'] as const;

/** Longest HTTP path a health check may ask for. */
export const MAX_HEALTH_PATH = 1024;
/** URI characters of an origin-form path (RFC 3986 pchar, '/', '?', '%'): nothing that can break a request line. */
const PATH_RE = /^\/[A-Za-z0-9._~!$&'()*+,;=:@/%?-]*$/;

export type Report = (code: FormfileErrorCode, message: string, offset: number) => void;

/** `none` for `HEALTHCHECK NONE`, the spec, or undefined when something was reported. */
export type HealthcheckResult = HealthcheckSpec | 'none' | undefined;

/**
 * Parse `HEALTHCHECK [--interval=<d>] [--timeout=<d>] [--retries=<n>] [--start-period=<d>]
 * CMD <command> | CMD ["prog", "arg"] | HTTP <port> [<path>] | TCP <port> | NONE` from `from` (the first
 * character after the instruction word) to the end of `text` (one logical line). Reports every problem
 * with its offset; pure.
 */
export function parseHealthcheck(text: string, from: number, report: Report): HealthcheckResult {
  const given = new Map<OptionName, { value: number; at: number }>();
  let i = from;
  let ok = true;
  const fail = (code: FormfileErrorCode, message: string, at: number) => {
    ok = false;
    report(code, message, at);
  };
  // Options and the kind are plain words (no quotes): a CMD's shell command after them is taken as written.
  const word = (): { value: string; start: number; end: number } | undefined => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
    if (i >= text.length) return undefined;
    const start = i;
    while (i < text.length && text[i] !== ' ' && text[i] !== '\t') i++;
    return { value: text.slice(start, i), start, end: i };
  };
  let kind = word();
  let options = 0;
  while (kind?.value.startsWith('--')) {
    if (++options > OPTION_NAMES.length) {
      fail('FORMFILE_SYNTAX', `HEALTHCHECK takes at most ${OPTION_NAMES.length} options, each once`, kind.start);
      return undefined;
    }
    option(kind.value, kind.start, given, fail);
    kind = word();
  }
  if (!kind) {
    fail(
      'FORMFILE_MISSING_ARGUMENT',
      'HEALTHCHECK needs what to check after its options: CMD <command>, HTTP <port> [<path>], TCP <port> or NONE',
      text.length,
    );
    return undefined;
  }
  const upper = kind.value.toUpperCase();
  if (!(HEALTHCHECK_KINDS as readonly string[]).includes(upper)) {
    const guess = closest(upper.slice(0, 64), HEALTHCHECK_KINDS);
    const httpLike = /^https?:\/\//i.test(kind.value) ? ': write HTTP <port> <path> (the node checks the replica)' : '';
    fail(
      'FORMFILE_SYNTAX',
      `HEALTHCHECK checks with CMD, HTTP, TCP or NONE, got "${kind.value.slice(0, 40)}"${httpLike || (guess ? `; did you mean ${guess}?` : '')}`,
      kind.start,
    );
    return undefined;
  }
  let test: HealthcheckTest | undefined;
  if (upper === 'NONE') {
    const first = [...given.values()].sort((a, b) => a.at - b.at)[0];
    if (first) fail('FORMFILE_SYNTAX', 'HEALTHCHECK NONE takes no options: it turns health checks off', first.at);
    const extra = word();
    if (extra)
      fail(
        'FORMFILE_SYNTAX',
        `HEALTHCHECK NONE takes nothing after it; unexpected "${extra.value.slice(0, 40)}"`,
        extra.start,
      );
    return ok ? 'none' : undefined;
  }
  if (upper === 'CMD') {
    const rest = text.slice(kind.end);
    const at = kind.end + (rest.length - rest.trimStart().length);
    const command = text.slice(at).trimEnd();
    if (command === '') {
      fail(
        'FORMFILE_MISSING_ARGUMENT',
        'HEALTHCHECK CMD needs a command: CMD <shell command> or CMD ["prog", "arg"]',
        text.length,
      );
      return undefined;
    }
    if (command.startsWith('[')) {
      const r = parseExecForm(text, at);
      if (!r.ok) {
        fail('FORMFILE_SYNTAX', `HEALTHCHECK CMD ${r.message}`, r.offset);
        return undefined;
      }
      test = { type: 'cmd', command: { form: 'exec', argv: r.argv } };
    } else test = { type: 'cmd', command: { form: 'shell', command } };
  } else {
    const { tokens, error } = tokenize(text, kind.end);
    if (error) {
      fail(
        'FORMFILE_SYNTAX',
        `Unclosed ${error.quote === '"' ? 'double' : 'single'} quote: expected a closing ${error.quote}`,
        error.offset,
      );
      return undefined;
    }
    const portTok = tokens[0];
    if (!portTok) {
      fail(
        'FORMFILE_MISSING_ARGUMENT',
        `HEALTHCHECK ${upper} needs a port: ${upper === 'HTTP' ? 'HTTP <port> [<path>]' : 'TCP <port>'}`,
        text.length,
      );
      return undefined;
    }
    const port = checkPort(portTok.value, upper, portTok.start, fail);
    if (upper === 'TCP') {
      const extra = tokens[1];
      if (extra)
        fail(
          'FORMFILE_SYNTAX',
          `HEALTHCHECK TCP takes one port; unexpected "${extra.value.slice(0, 40)}"`,
          extra.start,
        );
      if (port !== undefined) test = { type: 'tcp', port };
    } else {
      const pathTok = tokens[1];
      const extra = tokens[2];
      if (extra)
        fail(
          'FORMFILE_SYNTAX',
          `HEALTHCHECK HTTP takes a port and a path; unexpected "${extra.value.slice(0, 40)}"`,
          extra.start,
        );
      let path = '/';
      if (pathTok) {
        path = pathTok.value;
        if (path.length > MAX_HEALTH_PATH) {
          fail(
            'FORMFILE_OUT_OF_RANGE',
            `HEALTHCHECK HTTP path is longer than ${MAX_HEALTH_PATH} characters`,
            pathTok.start,
          );
        } else if (!path.startsWith('/')) {
          fail(
            'FORMFILE_BAD_VALUE',
            `HEALTHCHECK HTTP path must start with "/", such as /health, got "${path.slice(0, 40)}"`,
            pathTok.start,
          );
        } else if (!PATH_RE.test(path)) {
          fail(
            'FORMFILE_BAD_VALUE',
            "HEALTHCHECK HTTP path may hold only URI characters (letters, digits, - . _ ~ ! $ & ' ( ) * + , ; = : @ / % ?): " +
              'percent-encode the others (a space is %20)',
            pathTok.start,
          );
        }
      }
      if (port !== undefined) test = { type: 'http', port, path };
    }
  }
  const value = (name: OptionName): number | undefined => given.get(name)?.value;
  const intervalMs = value('interval') ?? HEALTHCHECK_DEFAULTS.intervalMs;
  const explicitTimeout = given.get('timeout');
  if (explicitTimeout && explicitTimeout.value > intervalMs) {
    fail(
      'FORMFILE_BAD_VALUE',
      `HEALTHCHECK --timeout (${explicitTimeout.value} ms) must not be longer than --interval (${intervalMs} ms): checks would overlap`,
      explicitTimeout.at,
    );
  }
  if (!ok || !test) return undefined;
  return {
    test,
    intervalMs,
    // Without --timeout, a short interval shortens the timeout too rather than being an error.
    timeoutMs: explicitTimeout?.value ?? Math.min(HEALTHCHECK_DEFAULTS.timeoutMs, intervalMs),
    retries: value('retries') ?? HEALTHCHECK_DEFAULTS.retries,
    startPeriodMs: value('start-period') ?? HEALTHCHECK_DEFAULTS.startPeriodMs,
  };
}

function option(
  raw: string,
  at: number,
  given: Map<OptionName, { value: number; at: number }>,
  fail: (code: FormfileErrorCode, message: string, at: number) => void,
): void {
  const eq = raw.indexOf('=');
  const name = (eq === -1 ? raw.slice(2) : raw.slice(2, eq)).toLowerCase();
  if (name === 'start-interval') {
    fail(
      'FORMFILE_SYNTAX',
      'HEALTHCHECK --start-interval is not supported: checks run every --interval from boot; use --start-period to ignore early failures',
      at,
    );
    return;
  }
  if (!(OPTION_NAMES as string[]).includes(name)) {
    const shown = name.slice(0, 40);
    const guess = closest(name.slice(0, 64), OPTION_NAMES);
    fail(
      'FORMFILE_SYNTAX',
      `Unknown HEALTHCHECK option "--${shown}"${guess ? `; did you mean --${guess}?` : `: expected one of ${OPTION_NAMES.map((o) => `--${o}`).join(', ')}`}`,
      at,
    );
    return;
  }
  const opt = name as OptionName;
  const example = opt === 'retries' ? '--retries=3' : `--${opt}=10s`;
  if (eq === -1 || eq === raw.length - 1) {
    fail('FORMFILE_MISSING_ARGUMENT', `HEALTHCHECK --${opt} needs a value written with "=", such as ${example}`, at);
    return;
  }
  if (given.has(opt)) {
    fail('FORMFILE_DUPLICATE', `HEALTHCHECK --${opt} is given twice`, at);
    return;
  }
  const text = raw.slice(eq + 1);
  const valueAt = at + eq + 1;
  const b = HEALTHCHECK_OPTIONS[opt];
  let n: number | undefined;
  if (opt === 'retries') {
    n = parseWholeNumber(text);
    if (n === undefined) {
      fail(
        'FORMFILE_BAD_VALUE',
        `HEALTHCHECK --retries must be a whole number such as 3, got "${text.slice(0, 40)}"`,
        valueAt,
      );
      return;
    }
  } else {
    const d = parseDuration(text);
    if (typeof d === 'string') {
      fail('FORMFILE_BAD_VALUE', `HEALTHCHECK --${opt} ${d}, got "${text.slice(0, 40)}"`, valueAt);
      return;
    }
    n = d;
  }
  if (n < b.min || n > b.max) {
    const shown = opt === 'retries' ? `${b.min} and ${b.max}` : `${formatDuration(b.min)} and ${formatDuration(b.max)}`;
    fail('FORMFILE_OUT_OF_RANGE', `HEALTHCHECK --${opt} must be between ${shown}: ${b.why}`, valueAt);
    return;
  }
  given.set(opt, { value: n, at });
}

function checkPort(
  value: string,
  kind: string,
  at: number,
  fail: (code: FormfileErrorCode, message: string, at: number) => void,
): number | undefined {
  const glued = /^([0-9]+)(\/.*)$/.exec(value);
  if (glued && kind === 'HTTP') {
    fail(
      'FORMFILE_BAD_VALUE',
      `HEALTHCHECK HTTP takes the port and the path apart: write HTTP ${glued[1]} ${glued[2]!.slice(0, 40)}`,
      at,
    );
    return undefined;
  }
  const n = parseWholeNumber(value);
  if (n === undefined) {
    fail(
      'FORMFILE_BAD_VALUE',
      `HEALTHCHECK ${kind} expects a port number such as 8080, got "${value.slice(0, 40)}"`,
      at,
    );
    return undefined;
  }
  if (n < 1 || n > 65535) {
    fail(
      'FORMFILE_OUT_OF_RANGE',
      `HEALTHCHECK ${kind} port must be between 1 and 65535 (a TCP port), got ${value.slice(0, 40)}`,
      at,
    );
    return undefined;
  }
  return n;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration such as `10s`, `500ms`, `1m30s` or `1h` in milliseconds, or why it is not one. Whole numbers
 * only, every part with a unit (ms, s, m, h), as Docker and Go write them.
 *
 * @example
 * parseDuration('1m30s') // 90000
 */
export function parseDuration(text: string): number | string {
  if (/^[0-9]+$/.test(text)) return `needs a unit: write ${text}s (units: ms, s, m, h)`;
  if (/^[0-9]*\.[0-9]+[a-z]*$/.test(text)) return 'must be whole numbers of ms, s, m or h (write 1500ms, not 1.5s)';
  const re = /([0-9]+)(ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  while (pos < text.length) {
    re.lastIndex = pos;
    const m = re.exec(text);
    if (!m) return 'must be a duration such as 10s, 500ms, 1m30s or 1h';
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = re.lastIndex;
  }
  if (!Number.isSafeInteger(total)) return Number.POSITIVE_INFINITY; // out of every range, reported as such
  if (pos === 0) return 'must be a duration such as 10s, 500ms, 1m30s or 1h';
  return total;
}

function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
