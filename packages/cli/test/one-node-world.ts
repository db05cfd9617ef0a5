// Shared by the tests of `form dns` and `form port` cores (dns.test.ts, port.test.ts): a real in-process
// state store holding a one-node admins network, the developer's instance and another owner's.
import { keyPairFromPrivate } from '@formation/identity';
import { localStateClient, openStateStore } from '@formation/state';

const k = (i: number) => keyPairFromPrivate((i + 1).toString(16).padStart(64, '0'));
/** The network's admin, its one node, the developer, and another owner. */
export const [admin, node, dev, other] = [k(1), k(20), k(10), k(11)];

/**
 * A new store: the network (admission by admins), the node admitted and registered, the developer's
 * instance `devInstance` and the other owner's `theirs`; with a state client over it.
 */
export function oneNodeWorld(devInstance: string) {
  const store = openStateStore({ path: ':memory:' });
  store.author(admin, 'network.init', { name: 't', admission: 'admins', admins: [admin.publicKey] });
  store.author(admin, 'node.admit', { node: node.publicKey, formnetRange: '10.129.1.0/24' });
  store.author(node, 'node.register', {
    capacity: { vcpu: 4, memMiB: 8192, diskGiB: 100 },
    endpoint: '127.0.0.1:4001',
    p2pPeerId: '12D3KooPeer1',
    wgPublicKey: `${'A'.repeat(42)}A=`,
    formnetRange: '10.129.1.0/24',
  });
  const body = { formpackId: 'ab'.repeat(32), replicas: 1, resources: { vcpu: 1, memMiB: 512, diskGiB: 5 } };
  store.author(dev, 'instance.create', { ...body, name: devInstance });
  store.author(other, 'instance.create', { ...body, name: 'theirs' });
  return { store, state: localStateClient(store) };
}
