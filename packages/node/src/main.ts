// formationd: one process running a whole Formation node. Started by `form node up` (which sends
// stdout/stderr to the node log) or directly: `node packages/node/src/main.ts [--data-dir D] [--netns N] [--port-offset K]`.
import { parseArgs } from 'node:util';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { loadNodeConfig } from './config.ts';
import { startNode } from './daemon.ts';

process.title = 'formationd';
let args: ReturnType<typeof parseArgs>['values'];
try {
  args = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      netns: { type: 'string' },
      'port-offset': { type: 'string' },
      'log-level': { type: 'string' },
      'advertise-host': { type: 'string' },
      'public-address': { type: 'string' },
      'instance-cidr': { type: 'string' },
      join: { type: 'string', multiple: true },
      domain: { type: 'string' },
      admin: { type: 'string', multiple: true },
      open: { type: 'boolean' },
      genesis: { type: 'string' },
    },
    strict: true,
  }).values;
} catch (err) {
  process.stderr.write(`formationd: ${(err as Error).message}\n`);
  process.exit(2);
}

try {
  const config = loadNodeConfig({
    ...(args['data-dir'] ? { dataDir: String(args['data-dir']) } : {}),
    ...(args.netns ? { netns: String(args.netns) } : {}),
    ...(args['port-offset'] ? { portOffset: Number(args['port-offset']) } : {}),
    ...(args['log-level'] ? { logLevel: String(args['log-level']) as 'info' } : {}),
    ...(args['advertise-host'] ? { advertiseHost: String(args['advertise-host']) } : {}),
    ...(args['public-address'] ? { publicAddress: String(args['public-address']) } : {}),
    ...(args['instance-cidr'] ? { instanceCidr: String(args['instance-cidr']) } : {}),
    ...(args.domain ? { domain: String(args.domain) } : {}),
    ...(Array.isArray(args.join) && args.join.length ? { join: args.join.map(String) } : {}),
    ...(Array.isArray(args.admin) && args.admin.length ? { admins: args.admin.map(String) } : {}),
    ...(args.open ? { admission: 'open' as const } : {}),
    ...(args.genesis ? { genesis: String(args.genesis) } : {}),
  });
  const logger = createLogger(config.logLevel);
  const node = await startNode(config, logger);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'formationd stopping');
    try {
      await node.close();
      logger.info('formationd stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'formationd stop failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
} catch (err) {
  if (isFormError(err)) {
    const e = err as { message: string; hint?: string };
    process.stderr.write(`formationd: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
  } else {
    process.stderr.write(`formationd: unexpected error: ${(err as Error).stack ?? String(err)}\n`);
  }
  process.exit(1);
}
