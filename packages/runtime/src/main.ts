// Standalone runtime node: `node packages/runtime/src/main.ts --config config.yaml` (seed 004's
// `hymx-node --config ./config.yaml`). The Formation node daemon mounts createRuntimeService instead.
import { parseArgs } from 'node:util';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { loadRuntimeConfig } from './config.ts';
import { createRuntimeService } from './service.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });
const logger = createLogger();
try {
  const config = loadRuntimeConfig({ file: values.config ?? 'config.yaml', env: process.env });
  const rt = await createRuntimeService({ config, logger });
  await rt.app.listen(rt.listen);
  logger.info({ nodeId: rt.nodeId, ...rt.listen }, 'server is running');
  const stop = async () => {
    await rt.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} catch (err) {
  logger.fatal({ code: isFormError(err) ? err.code : undefined }, (err as Error).message);
  process.exit(1);
}
