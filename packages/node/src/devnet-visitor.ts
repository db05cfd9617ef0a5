// The devnet world's visitor: a small HTTP server in the `<p>vis` namespace that plays the public
// internet. Every request is appended to a log as one JSON line with the address it came from, so a
// test sees who called (a laptop behind NAT shows up as its router's address).
//   node devnet-visitor.ts <port> <log file> <body>
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';

process.title = 'form-devnet-visitor';
const [portArg, logFile, body] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port < 1 || port > 65535 || !logFile || body === undefined) {
  process.stderr.write('usage: devnet-visitor.ts <port> <log file> <body>\n');
  process.exit(2);
}

/** One line of the visitor's request log. */
export interface VisitorRequest {
  ts: string;
  from: string;
  fromPort: number;
  method: string;
  url: string;
  userAgent: string | null;
}

const server = createServer((req, res) => {
  const row: VisitorRequest = {
    ts: new Date().toISOString(),
    from: (req.socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
    fromPort: req.socket.remotePort ?? 0,
    method: req.method ?? '',
    url: (req.url ?? '').slice(0, 512),
    userAgent: req.headers['user-agent']?.slice(0, 256) ?? null,
  };
  appendFileSync(logFile, `${JSON.stringify(row)}\n`);
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`${body}\n`);
});
server.listen(port, '0.0.0.0', () => process.stdout.write(`visitor listening on :${port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
