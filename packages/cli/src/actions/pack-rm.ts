import { developerKey, serviceUrl } from '../node-client.ts';
import { printJson } from '../output.ts';
import { localBuilder, resolveLocalId } from './pack-build.ts';

interface PackRmOptions {
  json?: boolean;
  local?: boolean;
  node?: string;
}

export async function packRm(idArg: string, opts: PackRmOptions): Promise<number> {
  let deleted: string;
  if (opts.local) {
    const b = await localBuilder();
    deleted = resolveLocalId(b, idArg);
    b.remove(deleted);
  } else {
    const { PackClient } = await import('@formation/pack');
    deleted = await new PackClient(await serviceUrl('pack', opts.node), await developerKey()).remove(idArg);
  }
  if (opts.json) printJson({ deleted });
  else process.stdout.write(`Deleted Formpack ${deleted}\n`);
  return 0;
}
