import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from '@formation/service';
import * as dnsPacket from 'dns-packet';

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
  logger: Logger;
}

export interface DnsResponder {
  address(): { address: string; port: number };
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const MAX_UDP = 512;

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
    if (q.type !== 'A' && (q.type as string) !== 'ANY') return { ...base, flags: aa, authorities: nodata };
    const answers: dnsPacket.Answer[] = ips.map((ip) => ({ type: 'A', name: q.name, ttl, data: ip }));
    const pkt: dnsPacket.Packet = { ...base, flags: aa, answers };
    // Keep within classic UDP size: drop records and set TC rather than send an oversize datagram.
    while (answers.length > 1 && dnsPacket.encodingLength(pkt) > MAX_UDP) answers.pop();
    if (answers.length < ips.length) pkt.flags = (pkt.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    return pkt;
  }

  const sock: Socket = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return; // not DNS: no answer, as servers do for garbage
    }
    if (query.type !== 'query') return;
    answer(query)
      .then((resp) => sock.send(dnsPacket.encode(resp), rinfo.port, rinfo.address))
      .catch((err: unknown) => log.error({ err }, 'cannot answer DNS query'));
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(opts.port ?? 53, opts.host ?? '127.0.0.1', () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('error', (err) => log.error({ err }, 'DNS socket error'));
  log.info({ ...sock.address(), domain }, 'DNS responder listening');
  return {
    address: () => {
      const a = sock.address();
      return { address: a.address, port: a.port };
    },
    close: () => new Promise<void>((resolve) => sock.close(() => resolve())),
  };
}
