#!/usr/bin/env node
import { connect } from 'node:net';
import { isFormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { loadVmmConfig } from './config.ts';
import { createVmmService } from './service.ts';

/** Wait until every host:port in `list` accepts TCP (WAIT_FOR), at most `timeoutMs`. */
async function waitFor(list: string, timeoutMs = 60_000): Promise<void> {
  const targets = list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const end = Date.now() + timeoutMs;
  for (const t of targets) {
    const i = t.lastIndexOf(':');
    const host = t.slice(0, i);
    const port = Number(t.slice(i + 1));
    for (;;) {
      const ok = await new Promise<boolean>((r) => {
        const s = connect(port, host, () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      });
      if (ok) break;
      if (Date.now() > end)
        throw new Error(`Cannot start: ${t} (WAIT_FOR) did not answer within ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** Run the VMM standalone: `node packages/vmm/src/main.ts [--port N] [--config FILE]`. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const flags: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') flags.apiPort = Number(argv[++i]);
    else if (a === '--host') flags.apiHost = argv[++i];
    else if (a === '--vm-dir') flags.vmDir = argv[++i];
    else if (a === '--images-dir') flags.imagesDir = argv[++i];
    else if (a === '--formpacks-dir') flags.formpacksDir = argv[++i];
    else if (a === '--config') process.env.VMM_CONFIG_PATH = argv[++i];
  }
  const config = loadVmmConfig(process.env, flags);
  const logger = createLogger(config.logLevel);
  if (config.waitFor) await waitFor(config.waitFor);
  const vmm = await createVmmService({ config, logger });
  await vmm.app.listen({ port: config.apiPort, host: config.apiHost });
  logger.info({ port: config.apiPort, accel: vmm.manager.fingerprint?.accel }, 'vmm listening');
  const stop = async (): Promise<void> => {
    await vmm.close(); // VMs keep running; the next start re-attaches
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`${isFormError(err) ? (err as Error).message : String((err as Error).stack ?? err)}\n`);
    process.exit(1);
  });
}
