import type { Command } from 'commander';
import { lazyAction } from '../output.ts';
import type { CommandContext } from '../program.ts';

const collect = (v: string, acc: string[] = []) => [...acc, v];

function withCommon(c: Command): Command {
  return c
    .option('--node <url>', 'runtime API URL (default FORM_RUNTIME_URL or http://127.0.0.1:8080)')
    .option('--json', 'print JSON');
}

export function registerRuntime({ noun }: CommandContext): void {
  const rt = noun(
    'runtime',
    'Compute runtime (HyMatrix/VMDocker compatible): modules, processes, messages, checkpoints',
  );
  rt.addHelpText(
    'after',
    `
Examples:
  $ form runtime image build-js                 build our JS process runtime image and import it
  $ form runtime module add mod-js.json
  $ form runtime spawn <module-id> --file counter.js
  $ form runtime send <pid> Inc --data 5
  $ form runtime result <pid> 1
  $ form runtime checkpoint <pid>
  $ form runtime restore <pid> <sha256>`,
  );
  const image = rt.command('image').description('Images in the node-local store (docker save archives)');
  withCommon(
    image
      .command('import')
      .argument('<archive>', 'docker save archive (.tar or .tar.gz) on the node')
      .option('--expect-id <sha256:…>', 'refuse unless the image id is this'),
  )
    .description('Import a docker save archive into the node-local image store')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'imageImport'));
  withCommon(image.command('build-js'))
    .description('Build the JS process runtime image (no Docker needed) and import it')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'imageBuildJs'));
  withCommon(image.command('list'))
    .description('List stored images')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'imageList'));

  const mod = rt.command('module').description('Modules: which image runs a kind of process');
  withCommon(
    mod.command('add').argument('<file>', 'module JSON (ModuleFormat web.vmdocker-…, tags Image-Name and Image-ID)'),
  )
    .description('Register a module')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'moduleAdd'));
  withCommon(mod.command('list'))
    .description('List modules')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'moduleList'));

  withCommon(rt.command('spawn').argument('<module>', 'module id'))
    .description('Spawn a process from a module')
    .option('--data <text>', 'spawn data (for the JS runtime: the process code)')
    .option('--file <path>', 'read the spawn data from a file')
    .option('--tag <name=value>', 'process tag (repeatable)', collect)
    .action(lazyAction(() => import('../actions/runtime.ts'), 'spawnProcess'));
  withCommon(rt.command('list'))
    .description('List processes on the node')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'listProcesses'));
  withCommon(rt.command('send').argument('<pid>', 'process id').argument('<action>', 'message Action'))
    .description('Send a message to a process and print its result')
    .option('--data <text>', 'message data', '')
    .option('--param <name=value>', 'message tag (repeatable)', collect)
    .option('--dry-run', 'compute the result without changing the process')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'sendMessage'));
  withCommon(
    rt.command('result').argument('<pid>', 'process id').argument('<message>', 'sequence number or message id'),
  )
    .description('Show the result of a message')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'messageResult'));
  withCommon(rt.command('checkpoint').argument('<pid>', 'process id'))
    .description('Checkpoint a process (state + workspace, content-hashed)')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'checkpoint'));
  withCommon(
    rt.command('restore').argument('<pid>', 'process id').argument('[sha256]', 'checkpoint stored on the node'),
  )
    .description('Restore a process from a checkpoint (a corrupt one is refused; the process keeps its state)')
    .option('--file <path>', 'checkpoint blob to upload instead of a stored sha256')
    .action(lazyAction(() => import('../actions/runtime.ts'), 'restore'));
}
