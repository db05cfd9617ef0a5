// Run by `bindUdpInNetns` as `ip netns exec <ns> node netns-bind-child.ts <host:port>…`: binds UDP
// sockets inside the namespace and hands them to the parent over the IPC channel, then exits. The
// sockets stay in the namespace they were made in, wherever the process using them runs.
import { createSocket, type Socket } from 'node:dgram';

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write('netns-bind-child: no IPC channel\n');
  process.exit(2);
}

function bind(spec: string): Promise<Socket> {
  const i = spec.lastIndexOf(':');
  const host = spec.slice(0, i);
  const port = Number(spec.slice(i + 1));
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(port, host, () => {
      s.off('error', reject);
      resolve(s);
    });
  });
}

try {
  const sockets: Socket[] = [];
  for (const spec of process.argv.slice(2)) sockets.push(await bind(spec));
  for (const [i, s] of sockets.entries()) {
    await new Promise<void>((resolve, reject) =>
      send({ index: i, address: s.address() }, s, undefined, (err: Error | null) => (err ? reject(err) : resolve())),
    );
  }
  // The parent disconnects once it holds them all; then nothing keeps this process alive.
  for (const s of sockets) s.close();
} catch (err) {
  send({ error: (err as Error).message });
}
