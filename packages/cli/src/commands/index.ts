import type { CommandContext } from '../program.ts';
import { registerAttest } from './attest.ts';
import { registerCommit } from './commit.ts';
import { registerDevnet } from './devnet.ts';
import { registerDisk } from './disk.ts';
import { registerDns } from './dns.ts';
import { registerFormnet } from './formnet.ts';
import { registerKitInit } from './kit-init.ts';
import { registerLogs } from './logs.ts';
import { registerManage } from './manage.ts';
import { registerNode } from './node.ts';
import { registerPackBuild } from './pack-build.ts';
import { registerPackInspect } from './pack-inspect.ts';
import { registerPackList } from './pack-list.ts';
import { registerPackRm } from './pack-rm.ts';
import { registerPackShip } from './pack-ship.ts';
import { registerPackValidate } from './pack-validate.ts';
import { registerPort } from './port.ts';
import { registerRuntime } from './runtime.ts';
import { registerSecret } from './secret.ts';
import { registerSsh } from './ssh.ts';
import { registerWeb } from './web.ts';

/**
 * Every command file registers itself here; order is the order in `form --help`.
 * Every `form` call loads all of these, so a command file holds only its commander definition and help
 * text; the body lives in src/actions/ and loads when the command runs:
 * `.action(lazyAction(() => import('../actions/<file>.ts'), '<function>'))`. Import heavy packages
 * (@formation/pack, attest, node, state's index, service's index) only from actions; `npm run bench -- cli`
 * measures the start-up.
 */
export const commands: Array<(ctx: CommandContext) => void> = [
  registerKitInit,
  registerPackValidate,
  registerPackBuild,
  registerPackShip,
  registerPackList,
  registerPackInspect,
  registerPackRm,
  registerNode,
  registerDevnet,
  registerManage,
  registerLogs,
  registerSsh,
  registerFormnet,
  registerCommit,
  registerAttest,
  registerSecret,
  registerDisk,
  registerDns,
  registerPort,
  registerRuntime,
  registerWeb,
];
