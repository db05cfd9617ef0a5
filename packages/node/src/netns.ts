import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { FormError } from '@formation/interface';

const run = promisify(execFile);

async function ip(args: string[]): Promise<string> {
  try {
    const { stdout } = await run('ip', args);
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new FormError('NET_ERROR', `Cannot run \`ip ${args.join(' ')}\`: ${(e.stderr ?? e.message).trim()}`, {
      hint: 'The node needs root (CAP_NET_ADMIN) for namespaces and routes; `form node doctor` checks this.',
    });
  }
}

export async function netnsExists(name: string): Promise<boolean> {
  const out = await ip(['netns', 'list']);
  return out.split('\n').some((l) => l.split(' ')[0] === name);
}

/** Create the node's namespace (lo up, forwarding on). Returns whether we created it (and so must remove it). */
export async function ensureNetns(name: string): Promise<boolean> {
  if (await netnsExists(name)) return false;
  await ip(['netns', 'add', name]);
  await ip(['-n', name, 'link', 'set', 'lo', 'up']);
  await run('ip', ['netns', 'exec', name, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  return true;
}

export async function deleteNetns(name: string): Promise<void> {
  if (await netnsExists(name)) await ip(['netns', 'del', name]);
}
