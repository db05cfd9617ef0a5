// One DNS-over-TCP connection (RFC 1035 4.2.2 / RFC 7766): two length bytes, then the message; one
// query answered at a time. What a hostile client can do to a public server is bounded here:
// a query larger than `maxQueryBytes` or pipelining more than two queries ahead closes the connection,
// a client that leaves more than `maxUnreadBytes` of answers unread is read no further (and so is cut
// off by the pipelining limit as soon as it keeps asking), and after `queriesPerConnection` answers
// the connection is closed after the last one. Works on any Duplex, so the limits are unit-tested
// with a stream that never drains, and used on real sockets by `dns.ts`.
import type { Duplex } from 'node:stream';

export interface DnsTcpLimits {
  maxQueryBytes: number;
  queriesPerConnection: number;
  maxUnreadBytes: number;
}

export interface DnsTcpEvents {
  /** An answer was written. */
  answered(): void;
  /** We closed the connection: `reason` is `cap` (queries per connection) or `abuse` (pipelining, unread answers). */
  closed(reason: 'cap' | 'abuse'): void;
  error(err: unknown): void;
}

/**
 * Serve queries on `c` until it closes. `respond` returns the encoded answer, or undefined to close
 * the connection without one (not a query we answer).
 */
export function serveDnsTcp(
  c: Duplex,
  respond: (msg: Buffer) => Promise<Buffer | undefined>,
  limits: DnsTcpLimits,
  on: DnsTcpEvents,
): void {
  let buf = Buffer.alloc(0);
  let busy = false;
  let served = 0;
  const pump = (): void => {
    if (busy || buf.length < 2 || c.destroyed || c.writableEnded) return;
    // Answers the client has not read yet: ask nothing more of us until it reads them.
    if (c.writableLength > limits.maxUnreadBytes) {
      c.once('drain', pump);
      return;
    }
    const len = buf.readUInt16BE(0);
    if (len === 0 || len > limits.maxQueryBytes) {
      c.destroy();
      return;
    }
    if (buf.length < 2 + len) return;
    const msg = buf.subarray(2, 2 + len);
    buf = buf.subarray(2 + len);
    busy = true;
    respond(msg)
      .then((out) => {
        if (!out || c.destroyed) {
          c.destroy();
          return;
        }
        const head = Buffer.alloc(2);
        head.writeUInt16BE(out.length);
        on.answered();
        served++;
        if (served >= limits.queriesPerConnection) {
          on.closed('cap');
          c.end(Buffer.concat([head, out])); // the last answer, then FIN: ask again on a new connection
          return;
        }
        c.write(Buffer.concat([head, out]));
        busy = false;
        pump();
      })
      .catch((err: unknown) => {
        on.error(err);
        c.destroy();
      });
  };
  c.on('data', (d: Buffer) => {
    if (c.destroyed) return;
    if (buf.length + d.length > 2 + limits.maxQueryBytes + 2 * limits.maxQueryBytes) {
      on.closed('abuse');
      c.destroy(); // pipelining more than a few queries ahead, or not reading its answers: not a resolver
      return;
    }
    buf = Buffer.concat([buf, d]);
    pump();
  });
}
