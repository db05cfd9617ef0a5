import { readFileSync } from 'node:fs';
import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey } from '../node-client.ts';
import { action, printJson } from '../output.ts';
import type { CommandContext } from '../program.ts';
import { attestAll, planAttestation } from './attest.ts';

interface SecretPutOptions {
  valueFile?: string;
  json?: boolean;
  node?: string;
}

export function registerSecret({ noun }: CommandContext): void {
  noun('secret', 'Secrets sealed to attested instances')
    .command('put')
    .description(
      'Attest every replica, then seal the secret to each passing replica’s guest key; it lands in ' +
        '/run/form/secrets/NAME (0600) inside the guest. Failing replicas never receive it.',
    )
    .argument('<instance>', 'instance name or id')
    .argument('<name>', 'secret name (letters, digits, . _ -)')
    .option('--value-file <file>', 'read the value from a file (default: stdin)')
    .option('--json', 'print the result as JSON')
    .option('--node <url>', 'node to ask')
    .addHelpText(
      'after',
      '\nThe secret lives in guest RAM: put it again after the instance restarts (its key is new each boot).\n\n' +
        'Examples:\n  $ printf %s "$DB_PASSWORD" | form secret put hello-server DB_PASSWORD\n' +
        '  $ form secret put hello-server TLS_KEY --value-file key.pem',
    )
    .action(action(secretPut));
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function secretPut(ref: string, name: string, opts: SecretPutOptions): Promise<number> {
  const value = opts.valueFile ? readFileSync(opts.valueFile) : await readStdin();
  if (value.length > 512 * 1024) throw new FormError('BAD_REQUEST', 'Cannot store the secret: larger than 512 KiB');
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node);
  const results = await attestAll(plan, key);
  const { putSecret } = await import('@formation/attest');
  const rows: Array<{ vm: string; node: string; ok: boolean; detail: string }> = [];
  for (const r of results) {
    try {
      const res = await putSecret(key, r, name, value);
      rows.push({ vm: r.target.vm, node: r.target.nodePublicKey, ok: true, detail: `stored in ${res.path}` });
    } catch (err) {
      rows.push({ vm: r.target.vm, node: r.target.nodePublicKey, ok: false, detail: (err as Error).message });
    }
  }
  const ok = rows.every((r) => r.ok);
  if (opts.json) printJson({ instance: plan.instance.id, name, ok, replicas: rows });
  else {
    for (const r of rows) {
      process.stdout.write(
        `${r.ok ? pc.green('SENT   ') : pc.red('REFUSED')} ${r.vm} on node ${r.node.slice(0, 18)}…  ${r.detail}\n`,
      );
    }
  }
  return ok ? 0 : 1;
}
