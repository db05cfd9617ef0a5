// Run the dashboard on its own next to a running node (until formationd serves it itself):
//   node packages/web/src/main.ts            # http://127.0.0.1:3010, node APIs on 3001-3004
//   FORM_PORT_OFFSET=200 node packages/web/src/main.ts
// FORM_HOST and FORM_PORT_OFFSET mean what they mean for formationd; FORM_WEB_PORT overrides the port.
import { DEFAULT_PORTS } from '@formation/interface';
import { createLogger } from '@formation/service';
import { createWebService } from './index.ts';

const host = process.env.FORM_HOST ?? '127.0.0.1';
const offset = Number(process.env.FORM_PORT_OFFSET ?? 0) || 0;
const url = (port: number) => `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port + offset}`;
const logger = createLogger();
const web = await createWebService({
  urls: {
    state: url(DEFAULT_PORTS.state),
    pack: url(DEFAULT_PORTS.pack),
    vmm: url(DEFAULT_PORTS.vmm),
    formnet: url(DEFAULT_PORTS.formnet),
  },
  logger,
});
const port = Number(process.env.FORM_WEB_PORT ?? DEFAULT_PORTS.web + offset);
await web.app.listen({ host, port });
logger.info({ url: `http://${host}:${port}` }, 'dashboard listening; sign in with `form web login`');
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void web.close().then(() => process.exit(0));
  });
}
