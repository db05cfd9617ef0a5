import type { AddressInfo } from 'node:net';
import type { ApiServer } from '@formation/service';

/** Listen on a free loopback port; the base URL. */
export async function listen(app: ApiServer): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

/** A `node.register` body for the one node the BFF tests' state knows. */
export const TEST_NODE = {
  name: 'node-test',
  capacity: { vcpu: 4, memMiB: 4096, diskGiB: 50 },
  endpoint: '127.0.0.1:3005',
  p2pPeerId: 'x',
  wgPublicKey: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  formnetRange: '10.129.0.0/24',
};
