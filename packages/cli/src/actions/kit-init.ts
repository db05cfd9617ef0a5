import { FormError, formHome } from '@formation/interface';
import { kitConfigPath, parseNodeUrl, readKitConfig, writeKitConfig } from '../cli-config.ts';
import { printJson } from '../output.ts';

interface KitInitOptions {
  yes?: boolean;
  force?: boolean;
  node?: string;
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
  const previous = await readKitConfig().catch(() => undefined);
  await writeKitConfig({
    version: 1,
    node,
    joinFormnet,
    keyPath,
    createdAt: previous?.createdAt ?? new Date().toISOString(),
  });
  if (opts.json) {
    printJson({ ok: true, address: key.address, keyPath, configPath: kitConfigPath(home), created, node, joinFormnet });
  } else {
    process.stdout.write(
      `${created ? 'Created' : 'Kept existing'} developer key ${key.address}\n` +
        `  key:    ${keyPath} (mode 0600; back it up, it is your identity)\n` +
        `  config: ${kitConfigPath(home)}\n` +
        `  node:   ${node}\n` +
        `  formnet: ${joinFormnet ? 'join permanently' : 'temporary peer per `form ssh`'}\n`,
    );
  }
  return 0;
}
