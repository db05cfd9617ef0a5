import assert from 'node:assert/strict';
import { test } from 'node:test';
import { replicaNodeUrl } from '../src/replica-nodes.ts';

test('replicaNodeUrl: nodes sharing this machine, nodes on their own hosts, and endpoints nobody else can reach', () => {
  const cases: Array<[string | null, 'vmm' | 'state' | 'pack' | 'formnet', string, string | null]> = [
    // one machine (local devnet): same loopback host, the other node's offset
    ['192.168.77.3:4015', 'vmm', 'http://127.0.0.1:4002', 'http://127.0.0.1:4012'],
    ['0.0.0.0:3005', 'state', 'http://127.0.0.1:3002', 'http://127.0.0.1:3004'],
    // other hosts: their public address over TLS, whatever this CLI's own node is
    ['198.51.100.12:3005', 'vmm', 'https://198.51.100.11:3002', 'https://198.51.100.12:3002'],
    ['198.51.100.13:3015', 'formnet', 'https://198.51.100.11:3002', 'https://198.51.100.13:3011'],
    ['[2001:db8::1]:3005', 'pack', 'https://198.51.100.11:3002', 'https://[2001:db8::1]:3003'],
    // told plain http to a non-loopback node: stays what the user chose
    ['10.0.0.9:3005', 'vmm', 'http://10.0.0.8:3002', 'http://10.0.0.9:3002'],
    // only that machine could reach these
    ['127.0.0.1:3005', 'vmm', 'https://198.51.100.11:3002', null],
    ['0.0.0.0:3005', 'vmm', 'https://198.51.100.11:3002', null],
    // not an endpoint
    [null, 'vmm', 'https://198.51.100.11:3002', null],
    ['nonsense', 'vmm', 'https://198.51.100.11:3002', null],
    ['198.51.100.12:22', 'vmm', 'https://198.51.100.11:3002', null],
  ];
  for (const [endpoint, service, local, want] of cases) {
    assert.equal(replicaNodeUrl(endpoint, service, local), want, `${endpoint} ${service} from ${local}`);
  }
});
