import { readFileSync } from 'node:fs';
import { FormError } from '@formation/interface';
import pc from 'picocolors';
import { developerKey } from '../node-client.ts';
import { printJson } from '../output.ts';
import { attestAll, planAttestation } from './attest.ts';

interface SecretPutOptions {
  valueFile?: string;
  json?: boolean;
  node?: string;
  measurement?: string;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function secretPut(ref: string, name: string, opts: SecretPutOptions): Promise<number> {
  const value = opts.valueFile ? readFileSync(opts.valueFile) : await readStdin();
  if (value.length > 512 * 1024) throw new FormError('BAD_REQUEST', 'Cannot store the secret: larger than 512 KiB');
  const key = await developerKey();
  const plan = await planAttestation(ref, key, opts.node, {
    use: 'secret',
    sending: `secret ${name}`,
    measurement: opts.measurement,
  });
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
