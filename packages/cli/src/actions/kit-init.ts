import { FormError, formHome } from '@formation/interface';
import { kitConfigPath, parseNodeKey, parseNodeUrl, readKitConfig, writeKitConfig } from '../cli-config.ts';
import { printJson } from '../output.ts';

interface KitInitOptions {
  yes?: boolean;
  force?: boolean;
  node?: string;
  nodeKey?: string;
  joinFormnet?: boolean;
  json?: boolean;
}

export async function kitInit(opts: KitInitOptions): Promise<number> {
  const { developerKeyPath, generateKeyPair, loadKey, saveKey } = await import('@formation/identity');
  const home = formHome();
  const keyPath = developerKeyPath(home);
  const interactive = !opts.yes && process.stdin.isTTY === true;
  if (!opts.yes && !interactive) {
    throw new FormError('CLI_USAGE', 'Cannot run the kit wizard: stdin is not a terminal', {
      hint: 'Pass --yes to take the defaults, plus --node/--join-formnet to choose.',
    });
  }
  let node = parseNodeUrl(opts.node ?? 'http://127.0.0.1');
  let joinFormnet = opts.joinFormnet ?? false;
  if (interactive) {
    const { confirm, input } = await import('@inquirer/prompts');
    node = parseNodeUrl(await input({ message: 'Node to talk to', default: node }));
    joinFormnet = await confirm({
      message: 'Join formnet permanently from this machine? (otherwise `form ssh` joins for each session)',
      default: joinFormnet,
    });
  }

  let existing: Awaited<ReturnType<typeof loadKey>> | undefined;
  try {
    existing = await loadKey(keyPath);
  } catch (err) {
    if (!(err instanceof FormError && err.code === 'KEY_NOT_FOUND')) {
      if (!opts.force) throw err;
    }
  }
  let created = false;
  let key = existing;
  if (!key || opts.force) {
    if (existing && interactive) {
      const { confirm } = await import('@inquirer/prompts');
      const ok = await confirm({
        message: `Replace the key of ${existing.address}? This identity is lost.`,
        default: false,
      });
      if (!ok)
        throw new FormError('KEY_EXISTS', 'Cannot replace key: you declined', { hint: 'Your existing key is kept.' });
    }
    key = generateKeyPair();
    await saveKey(key, keyPath, true);
    created = true;
  }
  const pin = await checkNodeKey(node, opts.nodeKey);
  const previous = await readKitConfig().catch(() => undefined);
  await writeKitConfig({
    version: 1,
    node,
    ...(pin.nodeKey ? { nodeKey: pin.nodeKey } : {}),
    joinFormnet,
    keyPath,
    createdAt: previous?.createdAt ?? new Date().toISOString(),
  });
  if (opts.json) {
    printJson({
      ok: true,
      address: key.address,
      keyPath,
      configPath: kitConfigPath(home),
      created,
      node,
      nodeKey: pin.nodeKey ?? null,
      nodeKeyCheck: pin.check,
      joinFormnet,
    });
  } else {
    process.stdout.write(
      `${created ? 'Created' : 'Kept existing'} developer key ${key.address}\n` +
        `  key:    ${keyPath} (mode 0600; back it up, it is your identity)\n` +
        `  config: ${kitConfigPath(home)}\n` +
        `  node:   ${node}\n` +
        (pin.nodeKey ? `  node key: ${pin.nodeKey} (${pin.check})\n` : '') +
        `  formnet: ${joinFormnet ? 'join permanently' : 'temporary peer per `form ssh`'}\n` +
        pin.advice,
    );
  }
  if (joinFormnet) await (await import('./formnet.ts')).formnetUpAfterInit(); // never fatal: says what to run instead
  return 0;
}

/** What `kit init` learned about the node's key: the key to pin, how it was checked, and what to tell the developer. */
interface NodeKeyPin {
  nodeKey: string | undefined;
  check: 'verified' | 'trusted-on-first-use' | 'unchecked' | 'plain-http';
  advice: string;
}

/**
 * For an https:// node: connect, verify its certificate binding, and pin the key (the one given with
 * --node-key, which the node must present, or the one it presents: trust on first use). For http://,
 * nothing to pin (say so when it is not loopback: that traffic is plaintext).
 */
async function checkNodeKey(node: string, given: string | undefined): Promise<NodeKeyPin> {
  const expected = given === undefined ? undefined : parseNodeKey(given);
  const u = new URL(node);
  if (u.protocol !== 'https:') {
    const loopback = /^(127\.|localhost$|\[::1\]$)/.test(u.hostname);
    return {
      nodeKey: expected,
      check: 'plain-http',
      advice: loopback
        ? ''
        : `  warning: ${node} is plain http: requests and answers cross the network unencrypted. Use https://${u.hostname} (the node's --public-address).\n`,
    };
  }
  const { serviceUrlOf } = await import('../node-client.ts');
  const { probeNodeKey } = await import('@formation/service/transport');
  try {
    const b = await probeNodeKey(serviceUrlOf(node, 'state'), {
      ...(expected ? { nodeKey: expected } : {}),
      timeoutMs: 10_000,
    });
    if (expected) return { nodeKey: b.nodeKey, check: 'verified', advice: '' };
    return {
      nodeKey: b.nodeKey,
      check: 'trusted-on-first-use',
      advice:
        `  Trusted on first use: check that key on the node itself (\`form node status --json\` shows nodeKey, or\n` +
        `  <data dir>/node/node.json). Every later call is pinned to it; to pin it up front next time:\n` +
        `  form kit init --node ${node} --node-key ${b.nodeKey}\n`,
    };
  } catch (err) {
    if (err instanceof FormError) throw err; // a refused certificate: never stored
    const why = (err as { cause?: { code?: string; message?: string } }).cause;
    if (expected) {
      return {
        nodeKey: expected,
        check: 'unchecked',
        advice: `  warning: could not reach ${node} to check its key (${why?.code ?? (err as Error).message}); it is pinned anyway and checked on the first call.\n`,
      };
    }
    throw new FormError(
      'CLI_NO_NODE',
      `Cannot check which node answers at ${node}: ${why?.code === 'ECONNREFUSED' ? 'nothing is listening' : (why?.message ?? (err as Error).message)}`,
      {
        hint: 'Start the node (with --public-address), or pass --node-key <key> from `form node status --json` on it.',
      },
    );
  }
}
