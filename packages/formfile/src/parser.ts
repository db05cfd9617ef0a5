import {
  type EnvScope,
  FORMFILE_DEFAULTS,
  type FormfileSpec,
  type FormfileUser,
  type HealthcheckSpec,
  parseAutostop,
} from '@formation/interface';
import { type FormfileDiagnostic, type FormfileErrorCode, type SourcePosition, sortDiagnostics } from './diagnostic.ts';
import { parseExecForm, shellJoin } from './exec-form.ts';
import { parseHealthcheck } from './healthcheck.ts';
import {
  BOUNDS,
  INSTRUCTION_WORDS,
  INSTRUCTIONS,
  type InstructionName,
  lookupInstruction,
  USER_DEFAULTS,
  USER_FIELDS,
  type UserField,
} from './instructions.ts';
import { type LogicalLine, logicalLines, positionAt, type Token, tokenize } from './lexer.ts';
import { closest } from './suggest.ts';
import {
  BOOL_EXPECTED,
  checkDebianPackage,
  checkDnsLabel,
  checkLinuxName,
  looksLikeSshKey,
  normalizePosix,
  parseBool,
  parseWholeNumber,
} from './values.ts';

/** Formfiles larger than this are refused before parsing (1 MiB). */
export const MAX_FORMFILE_BYTES = 1024 * 1024;
/** Stop after this many diagnostics: past that point more errors help nobody. */
export const MAX_DIAGNOSTICS = 200;

export interface ParseResult {
  /** The normalized Formfile, or null when there is any error. */
  spec: FormfileSpec | null;
  /** Every problem found, sorted by position; whole-file problems last. */
  errors: FormfileDiagnostic[];
  /**
   * The COPY entries found, also when `spec` is null, so the build context can be checked and reported
   * together with the syntax errors: `validateBuildContext(result, dir, result.copyPositions)`.
   */
  copy: FormfileSpec['copy'];
  /** Where the source of each `copy` entry is written (same index). */
  copyPositions: SourcePosition[];
}

/** Instructions from Dockerfiles people will try, with what to do instead. */
const DOCKER_HINTS: Record<string, string> = {
  FROM: 'Formfiles have no FROM: every Formpack starts from the Debian base image',
  CMD: 'use ENTRYPOINT to say what the instance runs',
  ADD: 'use COPY (sources must be files in the build directory)',
  LABEL: 'LABEL is not supported',
  MAINTAINER: 'MAINTAINER is not supported',
  ARG: 'ARG is not supported: write the values directly or use ENV',
  VOLUME: 'VOLUME is not supported: the instance disk is persistent (size it with DISK)',
  SHELL: 'SHELL is not supported: RUN uses /bin/sh',
  STOPSIGNAL: 'STOPSIGNAL is not supported',
  ONBUILD: 'ONBUILD is not supported',
};

const SYNTAX_OF = new Map(INSTRUCTIONS.map((i) => [i.name, i.syntax]));

/** The boolean USER fields, and the property of the user each one sets. */
const USER_BOOL_FIELDS = {
  sudo: 'sudo',
  ssh_pwauth: 'sshPwauth',
  lock_passwd: 'lockPasswd',
  disable_root: 'disableRoot',
  chpasswd_expire: 'chpasswdExpire',
} as const satisfies Partial<Record<UserField, keyof FormfileUser>>;

interface PendingCopy {
  src: string;
  dst: string | null;
  pos: SourcePosition;
}

/**
 * Parse and validate a Formfile. Pure: no file system access (see `validateBuildContext` for COPY sources).
 * Reports every error with its code, line and column; `spec` is null when there is any.
 *
 * @example
 * const { spec, errors } = parseFormfile('NAME hello\nVCPU 2\n');
 * // spec.vcpu === 2, spec.memMiB === 512, errors.length === 0
 */
export function parseFormfile(text: string): ParseResult {
  if (text.length > MAX_FORMFILE_BYTES || Buffer.byteLength(text, 'utf8') > MAX_FORMFILE_BYTES) {
    return {
      spec: null,
      errors: [
        {
          code: 'FORMFILE_TOO_LARGE',
          message: `Formfile is larger than ${MAX_FORMFILE_BYTES / 1024 / 1024} MiB; a Formfile describes a VM, its files go in the build directory`,
        },
      ],
      copy: [],
      copyPositions: [],
    };
  }
  const nul = text.indexOf('\0');
  if (nul !== -1) {
    const before = text.slice(0, nul);
    const line = before.split('\n').length;
    const column = nul - before.lastIndexOf('\n');
    return {
      spec: null,
      errors: [
        { code: 'FORMFILE_BINARY', message: 'Formfile contains a NUL byte: it is not a text file', line, column },
      ],
      copy: [],
      copyPositions: [],
    };
  }
  return new Parser().run(text);
}

class Parser {
  errors: FormfileDiagnostic[] = [];
  name: string | undefined;
  users: FormfileUser[] = [];
  usernames = new Map<string, number>();
  vcpu: number = FORMFILE_DEFAULTS.vcpu;
  memMiB: number = FORMFILE_DEFAULTS.memMiB;
  diskGiB: number = FORMFILE_DEFAULTS.diskGiB;
  copies: PendingCopy[] = [];
  install: string[] = [];
  runs: string[] = [];
  env: Array<{ key: string; value: string; scope: EnvScope }> = [];
  envIndex = new Map<string, number>();
  expose = new Set<number>();
  workdir: string = FORMFILE_DEFAULTS.workdir;
  entrypoint: FormfileSpec['entrypoint'] = null;
  noCopy = false;
  gpu = false;
  https: { port: number; terminate?: 'ingress' } | undefined;
  autostop: number | undefined;
  healthcheck: HealthcheckSpec | undefined;
  /** Once-only instructions: where each was first seen, and how it was spelled. */
  seen = new Map<InstructionName, { line: number; word: string }>();
  stopped = false;

  workdirSet = false;

  run(text: string): ParseResult {
    for (const l of logicalLines(text)) {
      if (this.errors.length >= MAX_DIAGNOSTICS) {
        this.errors.length = MAX_DIAGNOSTICS;
        this.errors.push({
          code: 'FORMFILE_SYNTAX',
          message: `Too many errors (${MAX_DIAGNOSTICS}); stopped checking here`,
          ...positionAt(l, 0),
        });
        this.stopped = true;
        break;
      }
      this.line(l);
    }
    if (this.errors.length > MAX_DIAGNOSTICS) {
      this.errors.length = MAX_DIAGNOSTICS;
      this.errors.push({ code: 'FORMFILE_SYNTAX', message: `Too many errors (${MAX_DIAGNOSTICS}); stopped checking` });
      this.stopped = true;
    }
    if (!this.seen.has('NAME') && !this.stopped) {
      this.errors.push({
        code: 'FORMFILE_MISSING_NAME',
        message:
          'Formfile has no NAME: add a line such as "NAME my-app" (a DNS label; the instance becomes <name>.<domain>)',
      });
    }
    const errors = sortDiagnostics(this.errors);
    const copy = this.copies.map((c) => ({ src: c.src, dst: this.resolveDst(c.dst) }));
    const copyPositions = this.copies.map((c) => c.pos);
    if (errors.length > 0) return { spec: null, errors, copy, copyPositions };
    const spec: FormfileSpec = {
      name: this.name!,
      users: this.users,
      vcpu: this.vcpu,
      memMiB: this.memMiB,
      diskGiB: this.diskGiB,
      copy,
      install: this.install,
      run: this.runs,
      env: this.env,
      expose: [...this.expose].sort((a, b) => a - b),
      workdir: this.workdir,
      entrypoint: this.entrypoint,
      noCopy: this.noCopy,
      gpu: this.gpu,
      ...(this.healthcheck ? { healthcheck: this.healthcheck } : {}),
      ...(this.https !== undefined ? { https: this.https } : {}),
      ...(this.autostop !== undefined ? { autostopMinutes: this.autostop } : {}),
    };
    return { spec, errors, copy, copyPositions };
  }

  resolveDst(dst: string | null): string {
    if (dst === null) return this.workdir;
    return normalizePosix(dst.startsWith('/') ? dst : `${this.workdir}/${dst}`);
  }

  err(code: FormfileErrorCode, message: string, l: LogicalLine, offset: number): void {
    this.errors.push({ code, message, ...positionAt(l, offset) });
  }

  line(l: LogicalLine): void {
    const m = /^[ \t]*(\S+)/.exec(l.text);
    if (!m) return;
    const word = m[1]!;
    const wordEnd = m[0].length;
    const wordStart = wordEnd - word.length;
    const instr = lookupInstruction(word);
    if (!instr) {
      this.unknown(l, word, wordStart);
      return;
    }
    const once = INSTRUCTIONS.find((i) => i.name === instr)!.once;
    if (once) {
      const prev = this.seen.get(instr);
      if (prev) {
        const as = prev.word.toUpperCase() !== instr ? ` (as ${prev.word.toUpperCase()})` : '';
        this.err(
          'FORMFILE_DUPLICATE',
          `${instr} is already set on line ${prev.line}${as}; it may appear only once`,
          l,
          wordStart,
        );
      } else {
        this.seen.set(instr, { line: positionAt(l, wordStart).line, word });
      }
    }
    const rest = l.text.slice(wordEnd);
    const argStart = wordEnd + (rest.length - rest.trimStart().length);
    const takesNoArgs = instr === 'NOCOPY' || instr === 'GPU';
    if (!takesNoArgs && rest.trim() === '') {
      this.err(
        'FORMFILE_MISSING_ARGUMENT',
        `${word.toUpperCase()} needs a value: ${SYNTAX_OF.get(instr)}`,
        l,
        wordEnd + (rest.length > 0 ? 1 : 0),
      );
      return;
    }
    // RUN and ENTRYPOINT take the rest of the line as written; the others take words.
    if (instr === 'RUN' || instr === 'ENTRYPOINT') {
      this.command(l, instr, argStart);
      return;
    }
    // HEALTHCHECK CMD takes its command as written too: it parses its own options and words.
    if (instr === 'HEALTHCHECK') {
      const hc = parseHealthcheck(l.text, wordEnd, (code, message, offset) => this.err(code, message, l, offset));
      if (hc && hc !== 'none' && !this.healthcheck) {
        this.healthcheck = hc;
      }
      return;
    }
    const { tokens, error } = tokenize(l.text, wordEnd);
    if (error) {
      const q = error.quote === '"' ? 'double' : 'single';
      this.err(
        'FORMFILE_SYNTAX',
        `Unclosed ${q} quote: expected a closing ${error.quote} before the end of the line`,
        l,
        error.offset,
      );
      return;
    }
    switch (instr) {
      case 'NAME':
        this.nameInstr(l, tokens);
        break;
      case 'USER':
        this.user(l, tokens, wordStart);
        break;
      case 'VCPU':
      case 'MEM':
      case 'DISK':
        this.number(l, instr, word.toUpperCase(), tokens);
        break;
      case 'COPY':
        this.copy(l, tokens);
        break;
      case 'INSTALL':
        this.installInstr(l, tokens);
        break;
      case 'ENV':
        this.envInstr(l, tokens);
        break;
      case 'EXPOSE':
        this.exposeInstr(l, tokens);
        break;
      case 'WORKDIR':
        this.workdirInstr(l, tokens);
        break;
      case 'NOCOPY':
        this.nocopy(l, tokens, wordStart);
        break;
      case 'GPU':
        this.gpuInstr(l, tokens);
        break;
      case 'HTTPS':
        this.httpsInstr(l, tokens);
        break;
      case 'AUTOSTOP': {
        // Scale to zero: `AUTOSTOP 15m` / `AUTOSTOP off` (parseAutostop, shared with form manage autostop).
        const t = tokens[0]!;
        this.extra(l, 'AUTOSTOP', tokens, 1, 'one idle time such as 15m, or off');
        const v = parseAutostop(t.value);
        if (typeof v === 'number') this.autostop = v;
        else
          this.err(
            v.range ? 'FORMFILE_OUT_OF_RANGE' : 'FORMFILE_BAD_VALUE',
            `AUTOSTOP "${t.value}": ${v.why}`,
            l,
            t.start,
          );
        break;
      }
    }
  }

  unknown(l: LogicalLine, word: string, at: number): void {
    const upper = word.toUpperCase();
    // Never echo something that looks like a field (it could be a password after a broken continuation).
    const shown = /[:=]/.test(word) ? 'this line' : `"${word}"`;
    if (!/^[A-Za-z][A-Za-z_]*$/.test(word)) {
      this.err(
        'FORMFILE_SYNTAX',
        `Expected an instruction (NAME, USER, VCPU, ...) at the start of ${shown === 'this line' ? shown : `the line, got ${shown}`}`,
        l,
        at,
      );
      return;
    }
    const docker = DOCKER_HINTS[upper];
    if (docker) {
      this.err('FORMFILE_UNKNOWN_INSTRUCTION', `Unknown instruction ${upper}: ${docker}`, l, at);
      return;
    }
    const guess = closest(word, INSTRUCTION_WORDS);
    const canonical = guess ? lookupInstruction(guess)! : undefined;
    const hint = guess
      ? `; did you mean ${guess}${canonical !== guess ? ` (${canonical})` : ''}?`
      : `: expected one of ${INSTRUCTIONS.map((i) => i.name).join(', ')}`;
    this.err('FORMFILE_UNKNOWN_INSTRUCTION', `Unknown instruction ${shown}${hint}`, l, at);
  }

  /** Report tokens past the first `max` as unexpected; returns false if there were any. */
  extra(l: LogicalLine, instr: string, tokens: Token[], max: number, what: string): boolean {
    const t = tokens[max];
    if (!t) return true;
    this.err('FORMFILE_SYNTAX', `${instr} takes ${what}; unexpected "${t.value}"`, l, t.start);
    return false;
  }

  nameInstr(l: LogicalLine, tokens: Token[]): void {
    const t = tokens[0]!;
    this.extra(l, 'NAME', tokens, 1, 'one name');
    const problem = checkDnsLabel(t.value);
    if (problem) this.err('FORMFILE_BAD_VALUE', problem, l, t.start);
    else if (this.name === undefined) this.name = t.value;
  }

  number(l: LogicalLine, instr: 'VCPU' | 'MEM' | 'DISK', word: string, tokens: Token[]): void {
    const t = tokens[0]!;
    this.extra(l, word, tokens, 1, 'one number');
    const b = BOUNDS[instr];
    const n = parseWholeNumber(t.value);
    if (n === undefined) {
      this.err(
        'FORMFILE_BAD_VALUE',
        `${word} must be a whole number of ${b.unit}, got "${t.value}"${unitHint(instr, word, t.value)}`,
        l,
        t.start,
      );
      return;
    }
    if (n < b.min || n > b.max) {
      this.err(
        'FORMFILE_OUT_OF_RANGE',
        `${word} must be between ${b.min} and ${b.max} ${b.unit}, got ${n}: ${b.why}`,
        l,
        t.start,
      );
      return;
    }
    if (instr === 'VCPU') this.vcpu = n;
    else if (instr === 'MEM') this.memMiB = n;
    else this.diskGiB = n;
  }

  user(l: LogicalLine, tokens: Token[], wordStart: number): void {
    const u: FormfileUser = {
      username: '',
      passwd: null,
      sudo: USER_DEFAULTS.sudo,
      sshAuthorizedKeys: [],
      sshPwauth: USER_DEFAULTS.sshPwauth,
      lockPasswd: USER_DEFAULTS.lockPasswd,
      shell: USER_DEFAULTS.shell,
      disableRoot: USER_DEFAULTS.disableRoot,
      chpasswdExpire: USER_DEFAULTS.chpasswdExpire,
      groups: [],
    };
    const given = new Set<UserField>();
    let usernameOk = false;
    let ok = true;
    const bad = (message: string, at: number) => {
      ok = false;
      this.err('FORMFILE_BAD_USER', message, l, at);
    };
    for (const t of tokens) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*[:=]/.exec(t.value);
      if (!m) {
        bad(
          'USER fields are written field:value or field=value; put values with spaces in double quotes, ' +
            'e.g. ssh_authorized_keys:"ssh-ed25519 AAAA... you@host"',
          t.start,
        );
        continue;
      }
      const raw = m[1]!;
      const value = t.value.slice(m[0].length);
      const src = l.text.slice(t.start, t.end);
      // Point value errors at the value when it is written plainly after the field name.
      const vAt = src.startsWith(m[0]) ? t.start + m[0].length : t.start;
      const field = (USER_FIELDS as readonly string[]).includes(raw) ? (raw as UserField) : undefined;
      if (!field) {
        const guess = closest(raw, USER_FIELDS);
        bad(
          `Unknown USER field "${raw}"${guess ? `; did you mean ${guess}?` : `: expected one of ${USER_FIELDS.join(', ')}`}`,
          t.start,
        );
        continue;
      }
      if (given.has(field)) {
        bad(`USER field ${field} is given twice on this line`, t.start);
        continue;
      }
      given.add(field);
      if (field in USER_BOOL_FIELDS) {
        const v = parseBool(value);
        if (v === undefined) bad(`USER field ${field} must be a boolean: ${BOOL_EXPECTED}, got "${value}"`, vAt);
        else u[USER_BOOL_FIELDS[field as keyof typeof USER_BOOL_FIELDS]] = v;
        continue;
      }
      switch (field) {
        case 'username': {
          const p = checkLinuxName('username', value);
          if (p) bad(`Invalid USER ${p}`, vAt);
          else if (value === 'root')
            bad('USER username:root is not allowed: root exists already (see disable_root)', vAt);
          else {
            const prev = this.usernames.get(value);
            if (prev !== undefined) {
              this.err('FORMFILE_DUPLICATE', `USER ${value} is already defined on line ${prev}`, l, vAt);
              ok = false;
            } else {
              this.usernames.set(value, positionAt(l, vAt).line);
              usernameOk = true;
            }
            u.username = value;
          }
          break;
        }
        case 'passwd':
          // Never echo the value.
          if (value === '') bad('USER passwd must not be empty (omit passwd for key-only login)', vAt);
          else u.passwd = value;
          break;
        case 'shell':
          if (!value.startsWith('/') || /\s/.test(value))
            bad(`USER shell must be an absolute path such as /bin/bash, got "${value}"`, vAt);
          else u.shell = normalizePosix(value);
          break;
        case 'ssh_authorized_keys': {
          const keys = value
            .split(',')
            .map((k) => k.trim())
            .filter((k) => k !== '');
          if (keys.length === 0)
            bad('USER ssh_authorized_keys is empty: give one or more public keys, comma-separated', vAt);
          for (const k of keys) {
            if (!looksLikeSshKey(k)) {
              bad(
                `USER ssh_authorized_keys: "${k.length > 40 ? `${k.slice(0, 40)}...` : k}" is not an OpenSSH public key ` +
                  '(expected "<type> <base64> [comment]"; quote keys that contain spaces)',
                vAt,
              );
            }
          }
          u.sshAuthorizedKeys = [...new Set(keys)];
          break;
        }
        case 'groups': {
          const groups = value
            .split(',')
            .map((g) => g.trim())
            .filter((g) => g !== '');
          for (const g of groups) {
            const p = checkLinuxName('group', g);
            if (p) bad(`Invalid USER ${p}`, vAt);
          }
          u.groups = [...new Set(groups)];
          break;
        }
      }
    }
    if (!given.has('username')) {
      bad('USER needs username:<name> (lowercase letter or _ first, at most 32 characters)', wordStart);
    }
    if (u.sshPwauth && given.has('ssh_pwauth') && u.passwd === null && given.has('username')) {
      bad(`USER ${u.username}: ssh_pwauth:true needs a passwd`, wordStart);
    }
    if (ok && usernameOk) this.users.push(u);
  }

  copy(l: LogicalLine, tokens: Token[]): void {
    const flag = tokens.find((t) => t.value.startsWith('--'));
    if (flag) {
      this.err('FORMFILE_SYNTAX', `COPY options such as ${flag.value.split('=')[0]} are not supported`, l, flag.start);
      return;
    }
    const srcs = tokens.length === 1 ? tokens : tokens.slice(0, -1);
    const dstTok = tokens.length === 1 ? undefined : tokens[tokens.length - 1]!;
    let dst: string | null = null;
    if (dstTok) {
      if (dstTok.value === '') {
        this.err('FORMFILE_BAD_PATH', 'COPY destination must not be empty', l, dstTok.start);
        return;
      }
      dst = dstTok.value;
    }
    for (const t of srcs) {
      const src = t.value;
      let problem: string | undefined;
      if (src === '') problem = 'COPY source must not be empty';
      else if (src.startsWith('/'))
        problem = `COPY source "${src}" must be relative to the build directory, not absolute`;
      else if (/[*?[]/.test(src))
        problem = `COPY source "${src}": wildcards are not supported; name each file or a directory`;
      else if (normalizePosix(src) === '..' || normalizePosix(src).startsWith('../')) {
        problem = `COPY source "${src}" is outside the build directory ('..' may not leave it)`;
      }
      if (problem) {
        this.err('FORMFILE_BAD_PATH', problem, l, t.start);
        continue;
      }
      this.copies.push({ src: normalizePosix(src), dst, pos: positionAt(l, t.start) });
    }
  }

  installInstr(l: LogicalLine, tokens: Token[]): void {
    for (const t of tokens) {
      const p = checkDebianPackage(t.value);
      if (p) this.err('FORMFILE_BAD_VALUE', p, l, t.start);
      else if (!this.install.includes(t.value)) this.install.push(t.value);
    }
  }

  envInstr(l: LogicalLine, tokens: Token[]): void {
    let scope: EnvScope = { kind: 'system' };
    let i = 0;
    const first = tokens[0]!;
    if (first.value.startsWith('--')) {
      i = 1;
      const m = /^--scope=(.*)$/s.exec(first.value);
      if (!m) {
        this.err(
          'FORMFILE_SYNTAX',
          `Unknown ENV option "${first.value.split('=')[0]}": expected --scope=<scope>`,
          l,
          first.start,
        );
        return;
      }
      const s = m[1]!;
      const valueAt = first.start + '--scope='.length;
      if (s === 'system') scope = { kind: 'system' };
      else if (s.startsWith('user:')) {
        const name = s.slice(5);
        const p = checkLinuxName('username', name);
        if (p) {
          this.err('FORMFILE_BAD_VALUE', `ENV --scope=user:<name>: ${p}`, l, valueAt + 5);
          return;
        }
        scope = { kind: 'user', name };
      } else if (s.startsWith('service:')) {
        const name = s.slice(8);
        if (!/^[A-Za-z0-9_][A-Za-z0-9_.@-]*$/.test(name)) {
          this.err(
            'FORMFILE_BAD_VALUE',
            `ENV --scope=service:<name>: service name must be letters, digits, '_', '.', '@' or '-', got "${name}"`,
            l,
            valueAt + 8,
          );
          return;
        }
        scope = { kind: 'service', name };
      } else {
        this.err(
          'FORMFILE_BAD_VALUE',
          `ENV scope must be system, user:<name> or service:<name>, got "${s}"`,
          l,
          valueAt,
        );
        return;
      }
    }
    const pairs = tokens.slice(i);
    if (pairs.length === 0) {
      this.err('FORMFILE_MISSING_ARGUMENT', 'ENV needs KEY=value after the scope', l, first.end);
      return;
    }
    for (const t of pairs) {
      const eq = t.value.indexOf('=');
      if (eq === -1) {
        this.err('FORMFILE_SYNTAX', `ENV expects KEY=value, got "${t.value}" (write ${t.value}=<value>)`, l, t.start);
        continue;
      }
      const key = t.value.slice(0, eq);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
        this.err(
          'FORMFILE_BAD_VALUE',
          `ENV name "${key}" is invalid: letters, digits and '_', not starting with a digit`,
          l,
          t.start,
        );
        continue;
      }
      const entry = { key, value: t.value.slice(eq + 1), scope };
      const id = `${scopeId(scope)}\0${key}`;
      const at = this.envIndex.get(id);
      if (at !== undefined) this.env[at] = entry;
      else {
        this.envIndex.set(id, this.env.length);
        this.env.push(entry);
      }
    }
  }

  exposeInstr(l: LogicalLine, tokens: Token[]): void {
    for (const t of tokens) {
      const m = /^([0-9]+)(?:\/([A-Za-z]+))?$/.exec(t.value);
      if (!m) {
        this.err('FORMFILE_BAD_VALUE', `EXPOSE expects a port number such as 8080, got "${t.value}"`, l, t.start);
        continue;
      }
      const proto = m[2]?.toLowerCase();
      if (proto !== undefined && proto !== 'tcp') {
        this.err('FORMFILE_BAD_VALUE', `EXPOSE supports TCP ports only, got "/${m[2]}"`, l, t.start + m[1]!.length);
        continue;
      }
      const port = Number(m[1]);
      if (port < 1 || port > 65535) {
        this.err(
          'FORMFILE_OUT_OF_RANGE',
          `EXPOSE port must be between 1 and 65535 (a TCP port), got ${m[1]}`,
          l,
          t.start,
        );
        continue;
      }
      this.expose.add(port);
    }
  }

  workdirInstr(l: LogicalLine, tokens: Token[]): void {
    const t = tokens[0]!;
    this.extra(l, 'WORKDIR', tokens, 1, 'one path (quote paths with spaces)');
    const p = t.value;
    if (!p.startsWith('/')) {
      this.err('FORMFILE_BAD_PATH', `WORKDIR must be an absolute path such as /app, got "${p}"`, l, t.start);
      return;
    }
    if (p.split('/').some((c) => c === '.' || c === '..')) {
      this.err('FORMFILE_BAD_PATH', `WORKDIR must not contain . or .. components, got "${p}"`, l, t.start);
      return;
    }
    if (!this.workdirSet) {
      this.workdirSet = true;
      this.workdir = normalizePosix(p);
    }
  }

  command(l: LogicalLine, instr: 'RUN' | 'ENTRYPOINT', at: number): void {
    const text = l.text.slice(at).trimEnd();
    if (text.startsWith('[')) {
      const r = parseExecForm(l.text, at);
      if (!r.ok) {
        this.err('FORMFILE_SYNTAX', `${instr} ${r.message}`, l, r.offset);
        return;
      }
      if (instr === 'RUN') this.runs.push(shellJoin(r.argv));
      else if (!this.entrypoint) this.entrypoint = { form: 'exec', argv: r.argv };
      return;
    }
    if (instr === 'RUN') this.runs.push(text);
    else if (!this.entrypoint) this.entrypoint = { form: 'shell', command: text };
  }

  nocopy(l: LogicalLine, tokens: Token[], wordStart: number): void {
    if (tokens[0]) {
      this.err('FORMFILE_SYNTAX', `NOCOPY takes no arguments; unexpected "${tokens[0].value}"`, l, tokens[0].start);
    }
    const ep = this.seen.get('ENTRYPOINT');
    if (ep) {
      this.err(
        'FORMFILE_ORDER',
        `NOCOPY must come before ENTRYPOINT (line ${ep.line}): move it above the ENTRYPOINT line`,
        l,
        wordStart,
      );
      return;
    }
    this.noCopy = true;
  }

  /**
   * `HTTPS <app port>`: TLS ends in the guest (ACME certificate, key made there) and goes to the app port;
   * 443 is exposed. `HTTPS <app port> TERMINATE=ingress`: TLS ends at the ingress nodes, which forward
   * plain HTTP to the app port (exposed; 443 is not: the guest serves no TLS).
   */
  httpsInstr(l: LogicalLine, tokens: Token[]): void {
    const t = tokens[0]!;
    const opt = tokens[1];
    let terminate: 'ingress' | undefined;
    if (opt) {
      const m = /^TERMINATE=(.*)$/i.exec(opt.value);
      if (!m || !['ingress', 'guest'].includes(m[1]!.toLowerCase())) {
        this.err(
          'FORMFILE_BAD_VALUE',
          `HTTPS takes TERMINATE=guest (the default: TLS ends in the guest) or TERMINATE=ingress after the port, got "${opt.value}"`,
          l,
          opt.start,
        );
        return;
      }
      if (m[1]!.toLowerCase() === 'ingress') terminate = 'ingress';
    }
    this.extra(l, 'HTTPS', tokens, 2, 'one port (the port the app serves plain HTTP on) and TERMINATE=guest|ingress');
    if (!/^[0-9]{1,5}$/.test(t.value)) {
      this.err('FORMFILE_BAD_VALUE', `HTTPS expects the app's port such as 8080, got "${t.value}"`, l, t.start);
      return;
    }
    const port = Number(t.value);
    if (port < 1 || port > 65535 || port === 443 || port === 4443) {
      this.err(
        'FORMFILE_OUT_OF_RANGE',
        `HTTPS takes the app's plain port (1-65535, not 443 or 4443, which the guest's TLS front uses), got ${t.value}`,
        l,
        t.start,
      );
      return;
    }
    if (terminate) {
      // The ingress ends TLS and sends plain HTTP to the app's port.
      this.https = { port, terminate };
      this.expose.add(port);
      return;
    }
    this.https = { port };
    // The ingress passes :443 through to the guest's TLS, which exists only when 443 is exposed.
    this.expose.add(443);
  }

  gpuInstr(l: LogicalLine, tokens: Token[]): void {
    const t = tokens[0];
    if (!t) {
      this.gpu = true;
      return;
    }
    this.extra(l, 'GPU', tokens, 1, 'at most one boolean');
    const v = parseBool(t.value);
    if (v === undefined)
      this.err(
        'FORMFILE_BAD_VALUE',
        `GPU must be a boolean or nothing: ${BOOL_EXPECTED}, got "${t.value}"`,
        l,
        t.start,
      );
    else this.gpu = v;
  }
}

function scopeId(s: EnvScope): string {
  return s.kind === 'system' ? 'system' : `${s.kind}:${s.name}`;
}

/** Suggest the plain number when someone writes a unit (`MEM 2G`, `DISK 10GB`). */
function unitHint(instr: 'VCPU' | 'MEM' | 'DISK', word: string, value: string): string {
  if (instr === 'VCPU') return '';
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([KMGT])(?:i?B)?$/i.exec(value);
  if (!m) return '';
  const factorsMiB: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 };
  const mib = Number(m[1]) * factorsMiB[m[2]!.toUpperCase()]!;
  const n = instr === 'MEM' ? mib : mib / 1024;
  const unit = instr === 'MEM' ? 'MiB' : 'GiB';
  return Number.isInteger(n)
    ? `; ${word} is in ${unit} without a unit: write ${word} ${n}`
    : `; ${word} is in ${unit} without a unit`;
}
