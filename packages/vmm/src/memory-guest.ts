/**
 * The simulated guest of the memory driver: a file system (a map of path -> content, persisted as the
 * VM's "disk") and a tiny POSIX-sh subset for the guest agent's `exec`. Enough for the driver
 * compliance suite and for tests that set guest files (`echo running 42 0 > /run/form/entrypoint.state`);
 * anything else answers like a shell that lacks the command (exit 127).
 *
 * Supported: `;`, `&&`, `||`, `>` and `>>` redirection, `$((a op b))`; commands echo, cat, test/[ -e|-f,
 * tail -n N, rm -f, mkdir -p, touch, sync, true, false, sleep.
 */
export type GuestFs = Record<string, string>;

export interface ExecResult {
  exitcode: number;
  stdout: string;
  stderr: string;
}

/** Run `sh -c script` (or one command with `args`) against `fs`, which it may change. */
export function guestExec(fs: GuestFs, path: string, args: string[]): ExecResult {
  if (path === '/bin/sh' || path === 'sh') {
    if (args[0] !== '-c' || args[1] === undefined)
      return { exitcode: 2, stdout: '', stderr: 'sh: only -c is supported\n' };
    return runScript(fs, args[1]);
  }
  return runCommand(fs, [path.split('/').pop() ?? path, ...args]);
}

function runScript(fs: GuestFs, script: string): ExecResult {
  const out: ExecResult = { exitcode: 0, stdout: '', stderr: '' };
  // Split into `cmd (op cmd)*` with op in ; && || (no quoting beyond single/double-quoted words).
  const parts = script.split(/(\|\||&&|;|\n)/);
  let op = ';';
  for (const raw of parts) {
    if (raw === '||' || raw === '&&' || raw === ';' || raw === '\n') {
      op = raw === '\n' ? ';' : raw;
      continue;
    }
    const text = raw.trim();
    if (!text) continue;
    if ((op === '&&' && out.exitcode !== 0) || (op === '||' && out.exitcode === 0)) continue;
    const r = runSimple(fs, text);
    out.exitcode = r.exitcode;
    out.stdout += r.stdout;
    out.stderr += r.stderr;
  }
  return out;
}

function runSimple(fs: GuestFs, text: string): ExecResult {
  const m = /^(.*?)\s*(>>|>)\s*(\S+)\s*$/.exec(text);
  const cmd = m ? (m[1] as string) : text;
  const words = (cmd.match(/'[^']*'|"[^"]*"|\S+/g) ?? []).map((w) => expand(w.replace(/^(['"])(.*)\1$/, '$2')));
  const r = runCommand(fs, words);
  if (m && r.exitcode === 0) {
    const file = m[3] as string;
    fs[file] = (m[2] === '>>' ? (fs[file] ?? '') : '') + r.stdout;
    return { ...r, stdout: '' };
  }
  return r;
}

/** `$((a op b))` with integers and + - * / %. */
function expand(word: string): string {
  return word.replace(/\$\(\((\d+)\s*([-+*/%])\s*(\d+)\)\)/g, (_, a: string, op: string, b: string) => {
    const x = Number(a);
    const y = Number(b);
    const v = op === '+' ? x + y : op === '-' ? x - y : op === '*' ? x * y : op === '/' ? Math.trunc(x / y) : x % y;
    return String(v);
  });
}

function runCommand(fs: GuestFs, words: string[]): ExecResult {
  const [name, ...a] = words;
  const ok = (stdout = ''): ExecResult => ({ exitcode: 0, stdout, stderr: '' });
  const fail = (stderr: string, exitcode = 1): ExecResult => ({ exitcode, stdout: '', stderr });
  switch (name) {
    case 'echo':
      return ok(`${a.join(' ')}\n`);
    case 'true':
    case 'sync':
    case 'sleep':
      return ok();
    case 'false':
      return fail('');
    case 'cat': {
      let s = '';
      for (const f of a) {
        if (fs[f] === undefined) return fail(`cat: ${f}: No such file or directory\n`);
        s += fs[f];
      }
      return ok(s);
    }
    case 'tail': {
      const n = a[0] === '-n' ? Number(a[1]) : 10;
      const f = a.at(-1) as string;
      if (fs[f] === undefined) return fail(`tail: cannot open '${f}': No such file or directory\n`);
      const lines = (fs[f] as string).replace(/\n$/, '').split('\n');
      return ok(`${lines.slice(-n).join('\n')}\n`);
    }
    case 'test':
    case '[': {
      const [flag, f] = a;
      if ((flag === '-e' || flag === '-f') && f) return fs[f] === undefined ? fail('') : ok();
      return fail(`${name}: unsupported test\n`, 2);
    }
    case 'rm':
      for (const f of a.filter((x) => !x.startsWith('-'))) delete fs[f];
      return ok();
    case 'touch':
      for (const f of a) fs[f] = fs[f] ?? '';
      return ok();
    case 'mkdir':
      return ok();
    default:
      return fail(`sh: ${name}: not found\n`, 127);
  }
}
