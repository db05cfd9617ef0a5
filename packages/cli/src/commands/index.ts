import type { CommandContext } from '../program.ts';
import { registerKitInit } from './kit-init.ts';
import { registerManage } from './manage.ts';
import { registerNode } from './node.ts';
import { registerPackValidate } from './pack-validate.ts';
import { registerRuntime } from './runtime.ts';
import { registerSsh } from './ssh.ts';

/** Every command file registers itself here; order is the order in `form --help`. */
export const commands: Array<(ctx: CommandContext) => void> = [
  registerKitInit,
  registerPackValidate,
  registerNode,
  registerManage,
  registerRuntime,
];
