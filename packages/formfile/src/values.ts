/** Value checks shared by the instruction handlers. Each returns an error message or undefined. */

/** A DNS label (RFC 1123): 1-63 of a-z, 0-9 and '-', not starting or ending with '-'. */
export function checkDnsLabel(name: string): string | undefined {
  if (name.length > 63) return `NAME must be at most 63 characters (a DNS label), got ${name.length}`;
  if (/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(name)) return undefined;
  const lower = name.toLowerCase();
  if (lower !== name && /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(lower)) {
    return `NAME must be lowercase (it becomes <name>.<domain>); did you mean "${lower}"?`;
  }
  return (
    `NAME "${name}" is not a valid DNS label: use lowercase letters, digits and '-', ` +
    `starting and ending with a letter or digit (it becomes <name>.<domain>)`
  );
}

/** A Linux user or group name as useradd accepts by default: lowercase or '_' first, then [a-z0-9_-], at most 32. */
export function checkLinuxName(kind: 'username' | 'group', name: string): string | undefined {
  if (name.length === 0) return `${kind} must not be empty`;
  if (name.length > 32) return `${kind} must be at most 32 characters, got ${name.length}`;
  if (!/^[a-z_]/.test(name)) return `${kind} "${name}" must start with a lowercase letter or '_'`;
  if (!/^[a-z_][a-z0-9_-]*$/.test(name)) {
    return `${kind} "${name}" may contain only lowercase letters, digits, '_' and '-'`;
  }
  return undefined;
}

const TRUE = new Set(['true', 'yes', '1', 'on']);
const FALSE = new Set(['false', 'no', '0', 'off']);

/** true/false, yes/no, 1/0, on/off (any case), or undefined when it is none of them. */
export function parseBool(value: string): boolean | undefined {
  const v = value.toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  return undefined;
}

export const BOOL_EXPECTED = 'expected true/false, yes/no, 1/0 or on/off';

/** A Debian package name (policy 5.6.1), optionally pinned: `name` or `name=version`. */
export function checkDebianPackage(spec: string): string | undefined {
  const eq = spec.indexOf('=');
  const name = eq === -1 ? spec : spec.slice(0, eq);
  if (name.startsWith('-')) {
    return `INSTALL takes package names, not apt options ("${name}"); the builder adds the apt-get flags itself`;
  }
  if (!/^[a-z0-9][a-z0-9+.-]+$/.test(name)) {
    const lower = name.toLowerCase();
    const hint = lower !== name && /^[a-z0-9][a-z0-9+.-]+$/.test(lower) ? `; did you mean "${lower}"?` : '';
    return (
      `"${name}" is not a valid Debian package name: at least 2 characters of lowercase letters, digits, ` +
      `'+', '-' and '.', starting with a letter or digit${hint}`
    );
  }
  if (eq !== -1) {
    const version = spec.slice(eq + 1);
    if (!/^[0-9][A-Za-z0-9.+~:-]*$/.test(version)) {
      return `"${version}" is not a valid Debian version for ${name} (expected e.g. ${name}=1.2.3-1)`;
    }
  }
  return undefined;
}

/** A whole positive number written in decimal digits, or undefined. */
export function parseWholeNumber(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Does this look like an OpenSSH public key line (`<type> <base64> [comment]`)? */
export function looksLikeSshKey(key: string): boolean {
  return /^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$/.test(
    key,
  );
}

/** POSIX-normalize a path without touching the file system. */
export function normalizePosix(path: string): string {
  const abs = path.startsWith('/');
  const out: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  return abs ? `/${joined}` : joined || '.';
}
