import type { FormpackManifest } from '@formation/interface';
import pc from 'picocolors';
import { serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { localBuilder, resolveLocalId } from './pack-build.ts';

interface PackInspectOptions {
  json?: boolean;
  local?: boolean;
  measurement?: boolean;
  node?: string;
}

export async function packInspect(idArg: string, opts: PackInspectOptions): Promise<number> {
  let m: FormpackManifest;
  if (opts.local) {
    const b = await localBuilder();
    m = b.get(resolveLocalId(b, idArg))!;
  } else {
    m = await new (await import('@formation/pack')).PackClient(await serviceUrl('pack', opts.node)).get(idArg);
  }
  if (opts.measurement) {
    const { expectedMeasurement, measurementText, INSTANCE_PARAM_KEYS } = await import('@formation/attest');
    const { inputs, digest } = expectedMeasurement(m);
    if (opts.json) printJson({ formpack: m.id, digest, inputs, text: measurementText(inputs) });
    else
      process.stdout.write(
        `${measurementText(inputs)}sha256:${digest}\n(Formpack part, for its own VCPU/MEM; instance params ${INSTANCE_PARAM_KEYS.join(' ')} are appended per VM)\n`,
      );
    return 0;
  }
  if (opts.json) {
    printJson(m);
    return 0;
  }
  const f = m.formfile;
  const lines = [
    `${pc.bold(m.name)}  ${m.id}`,
    `owner      ${m.owner}`,
    `created    ${m.createdAt}`,
    `resources  ${m.resources.vcpu} vCPU, ${m.resources.memMiB} MiB memory, ${m.resources.diskGiB} GiB disk${f.gpu ? ', GPU' : ''}`,
    `users      ${f.users.map((u) => `${u.username}${u.sudo ? ' (sudo)' : ''}`).join(', ') || '-'}`,
    `packages   ${f.install.join(' ') || '-'}`,
    `expose     ${f.expose.join(', ') || '-'}`,
    `entrypoint ${f.entrypoint ? (f.entrypoint.form === 'exec' ? JSON.stringify(f.entrypoint.argv) : f.entrypoint.command) : '-'}`,
    `boot       ${m.cmdline}  init=${m.init}`,
    `guest      agent ${m.guest.agent} on ${m.guest.agentChannel}, sshd ${m.guest.sshd}`,
    'artifacts',
    ...Object.values(m.artifacts).map(
      (a) => `  ${a.file.padEnd(14)} ${(a.bytes / 2 ** 20).toFixed(1).padStart(7)} MiB  sha256:${a.sha256}`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
