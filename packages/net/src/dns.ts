import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { createResponseRateLimiter, type RateDecision, type ResponseRateLimits } from './dns-limits.ts';
import { serveDnsTcp } from './dns-tcp.ts';

export const DEFAULT_DOMAIN = 'dev.formation.local';

/**
 * The formnet addresses of `name` (the part before the domain, lower case, e.g. `hello`), or
 * undefined when no such name exists. An empty array means the name exists but has no A record.
 */
export type RecordSource = (name: string) => string[] | undefined | Promise<string[] | undefined>;

export interface DnsResponderOptions {
  records: RecordSource;
  /**
   * Whole names outside `domain` this server also answers with authority (e.g. verified custom
   * domains their owners delegated here): addresses, or undefined to refuse them like any other zone.
   */
  outside?: RecordSource;
  domain?: string;
  /** Bind address; default 127.0.0.1. Inside a node's netns, its formnet address. */
  host?: string;
  /** Default 53. 0 picks a free port. */
  port?: number;
  ttl?: number;
  /**
   * For a server on a public address (issue 19): UDP answers rate limited per source network (RRL,
   * see `dns-limits.ts`), and a TCP listener on the same address and port for the resolvers that
   * retry after a truncated answer. Unset = neither (the formnet DNS).
   */
  public?: PublicDnsLimits;
  logger: Logger;
}

export interface PublicDnsLimits {
  rate: ResponseRateLimits;
  /** Also answer over TCP (RFC 7766); without it, `rate.slip` should be 0 (a TC=1 answer would be a dead end). */
  tcp: boolean;
  /** Open TCP connections per source address / in all. */
  tcpPerSource: number;
  tcpTotal: number;
  /** A TCP connection with no complete query for this long is closed (ms). */
  tcpIdleMs: number;
  /**
   * Queries answered on one TCP connection before it is closed (a resolver opens a new one; a client
   * that loops on one connection costs us no more than a reconnecting one, which the per-source limit counts).
   */
  tcpQueriesPerConnection: number;
  /**
   * Answer bytes a TCP client may leave unread; past it no more queries are read from it, and its
   * connection is closed once it has sent more than a few queries ahead (a client that never reads
   * must not grow our memory).
   */
  tcpMaxUnreadBytes: number;
}

/** Defaults for `public` with TCP on. */
export const DEFAULT_PUBLIC_DNS_TCP = {
  tcp: true,
  tcpPerSource: 4,
  tcpTotal: 256,
  tcpIdleMs: 10_000,
  tcpQueriesPerConnection: 100,
  tcpMaxUnreadBytes: 16 * 1024,
} as const;

/** What a responder did, for status and tests. */
export interface DnsResponderStats {
  /** UDP answers sent whole. */
  answered: number;
  /** UDP answers sent empty with TC=1 past the rate limit. */
  slipped: number;
  /** UDP answers not sent (past the rate limit, or a source port that only a reflection loop uses). */
  dropped: number;
  /** Answers over TCP. */
  tcpAnswered: number;
  /** TCP connections refused (per source / total limits). */
  tcpRefused: number;
  /** TCP connections closed by us: query cap reached, or a client that does not read its answers. */
  tcpClosed: number;
}

export interface DnsResponder {
  address(): { address: string; port: number };
  stats(): DnsResponderStats;
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
/** Every answer fits here, over UDP and TCP alike (no EDNS: a bigger answer only helps a reflector). */
export const MAX_DNS_ANSWER_BYTES = 512;
const MAX_UDP = MAX_DNS_ANSWER_BYTES;
/** The largest query read (a real query is well under it; more is not DNS we answer). */
const MAX_QUERY_BYTES = 512;
/**
 * UDP source ports we never answer: 0, and the small services (echo 7, daytime 13, qotd 17,
 * chargen 19, time 37, ntp 123, ...) a spoofed query would aim us at to start a packet loop. Real
 * resolvers use port 53 or a high port.
 */
export function reflectionPort(port: number): boolean {
  return port === 0 || (port < 1024 && port !== 53);
}

/**
 * An authoritative DNS server for one zone: A records for `<name>.<domain>` from `records`, NXDOMAIN
 * (with the zone's SOA) for unknown names under the domain, REFUSED for every other zone (it never
 * recurses). UDP only. Runs wherever it is bound: a daemon inside a node's netns binds there.
 *
 * @example
 * const dns = await createDnsResponder({ records: (n) => names.get(n), port: 5353, logger });
 * // dig @127.0.0.1 -p 5353 hello.dev.formation.local
 */
export async function createDnsResponder(opts: DnsResponderOptions): Promise<DnsResponder> {
  const log = opts.logger.child({ component: 'dns' });
  const domain = (opts.domain ?? DEFAULT_DOMAIN).toLowerCase().replace(/\.$/, '');
  const ttl = opts.ttl ?? 30;
  const soa: dnsPacket.Answer = {
    type: 'SOA',
    name: domain,
    ttl,
    data: {
      mname: `ns.${domain}`,
      rname: `hostmaster.${domain}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: ttl,
    },
  };

  async function answer(query: dnsPacket.DecodedPacket): Promise<dnsPacket.Packet> {
    const base = { type: 'response' as const, id: query.id ?? 0, questions: query.questions ?? [] };
    const rd = query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0;
    const q = query.questions?.[0];
    if (!q || (query.questions?.length ?? 0) !== 1) return { ...base, flags: rd | RCODE.FORMERR };
    // dns-packet decodes the opcode, its types do not declare it.
    const opcode = (query as { opcode?: string }).opcode;
    if (opcode !== undefined && opcode !== 'QUERY') return { ...base, flags: rd | RCODE.NOTIMP };
    // ANY is the classic amplification question (RFC 8482): refused, never answered with everything.
    if ((q.type as string) === 'ANY') return { ...base, flags: rd | RCODE.REFUSED };
    const qname = q.name.toLowerCase().replace(/\.$/, '');
    const aa = dnsPacket.AUTHORITATIVE_ANSWER | rd;
    if (qname !== domain && !qname.endsWith(`.${domain}`)) {
      let ips: string[] | undefined;
      try {
        ips = opts.outside ? await opts.outside(qname) : undefined;
      } catch (err) {
        log.error({ err, name: qname }, 'record source failed');
        return { ...base, flags: rd | RCODE.SERVFAIL };
      }
      if (ips === undefined) return { ...base, flags: rd | RCODE.REFUSED };
      return addressAnswer(base, aa, q, ips, []);
    }
    if (qname === domain) {
      if (q.type === 'SOA') return { ...base, flags: aa, answers: [soa] };
      return { ...base, flags: aa, authorities: [soa] };
    }
    const name = qname.slice(0, -(domain.length + 1));
    let ips: string[] | undefined;
    try {
      ips = await opts.records(name);
    } catch (err) {
      log.error({ err, name }, 'record source failed');
      return { ...base, flags: rd | RCODE.SERVFAIL };
    }
    if (ips === undefined) return { ...base, flags: aa | RCODE.NXDOMAIN, authorities: [soa] };
    return addressAnswer(base, aa, q, ips, [soa]);
  }

  /** A records for `q` (none, with `nodata` as authority, for other types or an empty list). */
  function addressAnswer(
    base: { type: 'response'; id: number; questions: dnsPacket.Question[] },
    aa: number,
    q: dnsPacket.Question,
    ips: string[],
    nodata: dnsPacket.Answer[],
  ): dnsPacket.Packet {
    if (q.type !== 'A') return { ...base, flags: aa, authorities: nodata };
    const answers: dnsPacket.Answer[] = ips.map((ip) => ({ type: 'A', name: q.name, ttl, data: ip }));
    const pkt: dnsPacket.Packet = { ...base, flags: aa, answers };
    // Keep within classic UDP size: drop records and set TC rather than send an oversize datagram.
    while (answers.length > 1 && dnsPacket.encodingLength(pkt) > MAX_UDP) answers.pop();
    if (answers.length < ips.length) pkt.flags = (pkt.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    return pkt;
  }

  const stats: DnsResponderStats = {
    answered: 0,
    slipped: 0,
    dropped: 0,
    tcpAnswered: 0,
    tcpRefused: 0,
    tcpClosed: 0,
  };
  const conns = new Set<TcpSocket>();
  const limits = opts.public;
  const rrl = limits ? createResponseRateLimiter(limits.rate) : undefined;

  /** The query in `msg`, or undefined when it gets no answer (too big, garbage, a response). */
  function decodeQuery(msg: Buffer): dnsPacket.DecodedPacket | undefined {
    if (msg.length > MAX_QUERY_BYTES) return undefined;
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return undefined; // not DNS: no answer, as servers do for garbage
    }
    return query.type === 'query' ? query : undefined; // a response: answering it would start a loop
  }
  async function respond(msg: Buffer): Promise<{ query: dnsPacket.DecodedPacket; resp: dnsPacket.Packet } | undefined> {
    const query = decodeQuery(msg);
    return query ? { query, resp: await answer(query) } : undefined;
  }
  /** The answer with no records and TC=1: "ask again over TCP". */
  const truncated = (query: dnsPacket.DecodedPacket): dnsPacket.Packet => ({
    type: 'response',
    id: query.id ?? 0,
    flags: (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) | dnsPacket.TRUNCATED_RESPONSE,
    questions: query.questions ?? [],
  });

  const onMessage = (sock: Socket) => (msg: Buffer, rinfo: { address: string; port: number }) => {
    if (limits && reflectionPort(rinfo.port)) {
      stats.dropped++;
      return;
    }
    const query = decodeQuery(msg);
    if (!query) return;
    // Decided before the answer is made: a flood past the limit costs a decode, not a lookup.
    const decision: RateDecision = rrl ? rrl.decide(rinfo.address, Date.now()) : 'answer';
    if (decision === 'drop') {
      stats.dropped++;
      return;
    }
    if (decision === 'slip') {
      stats.slipped++;
      sock.send(dnsPacket.encode(truncated(query)), rinfo.port, rinfo.address);
      return;
    }
    answer(query)
      .then((resp) => {
        stats.answered++;
        sock.send(dnsPacket.encode(resp), rinfo.port, rinfo.address);
      })
      .catch((err: unknown) => log.error({ err }, 'cannot answer DNS query'));
  };
  const bindUdp = async (port: number): Promise<Socket> => {
    const sock = createSocket('udp4');
    sock.on('message', onMessage(sock));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, opts.host ?? '127.0.0.1', () => {
        sock.off('error', reject);
        resolve();
      });
    }).catch((err: unknown) => {
      sock.close();
      throw err;
    });
    sock.on('error', (err) => log.error({ err }, 'DNS socket error'));
    return sock;
  };
  let sock: Socket;
  let tcp: Server | undefined;
  if (!limits?.tcp) sock = await bindUdp(opts.port ?? 53);
  else if ((opts.port ?? 53) !== 0) {
    sock = await bindUdp(opts.port ?? 53);
    tcp = await listenTcp(sock.address().port).catch((err: unknown) => {
      sock.close();
      throw err;
    });
  } else {
    // A free port for both: take one for TCP, then the same number for UDP (again if UDP has it in use).
    for (let attempt = 1; ; attempt++) {
      const t = await listenTcp(0);
      try {
        sock = await bindUdp((t.address() as { port: number }).port);
        tcp = t;
        break;
      } catch (err) {
        t.close();
        if (attempt >= 5) throw err;
      }
    }
  }
  log.info(
    { ...sock.address(), domain, tcp: tcp !== undefined, limited: rrl !== undefined },
    'DNS responder listening',
  );

  /** DNS over TCP: connection limits here, the per-connection limits in `dns-tcp.ts`. */
  function listenTcp(port: number): Promise<Server> {
    const L = limits as PublicDnsLimits;
    const perSource = new Map<string, number>();
    let open = 0;
    const server = createServer((c: TcpSocket) => {
      conns.add(c);
      c.once('close', () => conns.delete(c));
      const from = c.remoteAddress ?? '';
      if (open >= L.tcpTotal || (perSource.get(from) ?? 0) >= L.tcpPerSource) {
        stats.tcpRefused++;
        c.destroy();
        return;
      }
      open++;
      perSource.set(from, (perSource.get(from) ?? 0) + 1);
      c.once('close', () => {
        open--;
        const n = (perSource.get(from) ?? 1) - 1;
        if (n > 0) perSource.set(from, n);
        else perSource.delete(from);
      });
      c.setTimeout(L.tcpIdleMs, () => c.destroy());
      c.on('error', () => c.destroy());
      serveDnsTcp(
        c,
        async (msg) => {
          const r = await respond(msg);
          return r ? dnsPacket.encode(r.resp) : undefined;
        },
        {
          maxQueryBytes: MAX_QUERY_BYTES,
          queriesPerConnection: L.tcpQueriesPerConnection,
          maxUnreadBytes: L.tcpMaxUnreadBytes,
        },
        {
          answered: () => stats.tcpAnswered++,
          closed: () => stats.tcpClosed++,
          error: (err) => log.error({ err }, 'cannot answer DNS query over TCP'),
        },
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: opts.host ?? '127.0.0.1' }, () => {
        server.off('error', reject);
        server.on('error', (err) => log.error({ err }, 'DNS TCP socket error'));
        resolve(server);
      });
    });
  }

  return {
    address: () => {
      const a = sock.address();
      return { address: a.address, port: a.port };
    },
    stats: () => ({ ...stats }),
    close: async () => {
      await new Promise<void>((resolve) => sock.close(() => resolve()));
      if (tcp) {
        const t = tcp;
        for (const c of conns) c.destroy();
        await new Promise<void>((resolve) => t.close(() => resolve()));
      }
    },
  };
}
