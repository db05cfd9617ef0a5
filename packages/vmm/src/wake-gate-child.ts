// Run by WakeGate as `ip netns exec <ns> node wake-gate-child.ts` (IPC channel): listens on the bridge
// address for suspended VMs' ports, holds the connections that arrive (nftables sends them here), tells
// the parent, and when the VM runs again splices each one to the VM (connecting from this namespace, so
// the wake rules never apply to it). Ends with its parent.
import { connect, createServer, type Server, type Socket } from 'node:net';

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write('wake-gate-child: no IPC channel\n');
  process.exit(2);
}

/** Connections held per VM beyond which new ones are refused (a flood must not pin memory). */
const MAX_HELD = 256;

interface Held {
  sock: Socket;
  port: number;
}
interface Gate {
  ip: string;
  servers: Server[];
  held: Held[];
}
const gates = new Map<string, Gate>();

function listen(id: string, ip: string, host: string, ports: number[]): void {
  const gate: Gate = { ip, servers: [], held: [] };
  gates.set(id, gate);
  for (const port of ports) {
    const server = createServer({ pauseOnConnect: true }, (sock) => {
      const g = gates.get(id);
      if (g !== gate || gate.held.length >= MAX_HELD) {
        sock.destroy();
        return;
      }
      sock.on('error', () => undefined);
      gate.held.push({ sock, port });
      sock.once('close', () => {
        gate.held = gate.held.filter((h) => h.sock !== sock);
      });
      send?.({ op: 'held', id, port });
    });
    server.on('error', (err) => send?.({ op: 'error', id, message: err.message }));
    server.listen(0, host, () => {
      const a = server.address();
      send?.({ op: 'listening', id, port, hostPort: typeof a === 'object' && a ? a.port : 0 });
    });
    gate.servers.push(server);
  }
}

function splice(client: Socket, ip: string, port: number): void {
  const up = connect({ host: ip, port });
  up.on('error', () => client.destroy());
  client.on('error', () => up.destroy());
  up.once('connect', () => {
    client.pipe(up);
    up.pipe(client);
    client.resume();
  });
  up.on('close', () => client.destroy());
  client.on('close', () => up.destroy());
}

function end(id: string, up: boolean): void {
  const g = gates.get(id);
  if (!g) return;
  gates.delete(id);
  for (const s of g.servers) s.close();
  for (const h of g.held) {
    if (up) splice(h.sock, g.ip, h.port);
    else h.sock.destroy();
  }
  g.held = [];
}

process.on('message', (m: { op: string; id: string; ip?: string; host?: string; ports?: number[] }) => {
  if (m.op === 'listen' && m.ip && m.host && m.ports) listen(m.id, m.ip, m.host, m.ports);
  else if (m.op === 'up') end(m.id, true);
  else if (m.op === 'close') end(m.id, false);
  else if (m.op === 'fail') {
    const g = gates.get(m.id);
    if (g) {
      for (const h of g.held) h.sock.destroy();
      g.held = [];
    }
  }
});
process.on('disconnect', () => process.exit(0));
