import { randomInt } from 'node:crypto';
import type { RemoteInfo, Socket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { bindUdpInNetns } from './netns-socket.ts';
import { ipToInt, parseCidr } from './network.ts';

/**
 * The formnet addresses of `name` (the label before the domain, lower case), or undefined when no such
 * name exists — the same contract as `RecordSource` in @formation/net's DNS responder.
 */
export type DnsRecords = (name: string) => string[] | undefined | Promise<string[] | undefined>;

export interface Upstream {
  host: string;
  port: number;
}

export interface DnsForwarderOptions {
  /** Namespace to listen and forward from (the node's); empty = this process's. */
  netns?: string | undefined;
  /** Listen address: the bridge gateway. Port 53 unless set. */
  host: string;
  port?: number | undefined;
  /** Only clients in this range are answered (the instance range): never an open resolver. */
  clientCidr: string;
  /** formnet zone answered from `records` (never forwarded). */
  domain?: string | undefined;
  records?: DnsRecords | undefined;
  /** Where other names go: a fixed list, or (default) the namespace's resolv.conf, re-read every 10 s. */
  upstreams?: Upstream[] | undefined;
  /**
   * Whether names outside formnet are relayed for this client (false for VMs without egress: DNS
   * would otherwise be their way out). Default: everyone.
   */
  mayForward?: ((clientIp: string) => boolean) | undefined;
  /** Per upstream try (ms); each upstream is tried once in order. Default 2000. */
  timeoutMs?: number | undefined;
  /** Queries in flight to upstreams; more are answered SERVFAIL. Default 512. */
  maxPending?: number | undefined;
  logger: Logger;
}

export interface DnsForwarder {
  address(): { address: string; port: number };
  close(): Promise<void>;
}

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;
const MAX_UDP = 512;

/** Upstream servers from resolv.conf text (IPv4 `nameserver` lines); loopback ones only when allowed. */
export function parseResolvConf(text: string, opts: { allowLoopback: boolean }): Upstream[] {
  const out: Upstream[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*(?:#.*)?$/.exec(line);
    if (!m) continue;
    const host = m[1] as string;
    try {
      ipToInt(host);
    } catch {
      continue;
    }
    if (!opts.allowLoopback && host.startsWith('127.')) continue;
    out.push({ host, port: 53 });
  }
  return out;
}

/** The resolv.conf a process in `netns` sees (`ip netns exec` binds /etc/netns/<ns>/resolv.conf over /etc's). */
export function resolvConfPath(netns?: string): string {
  const own = netns ? `/etc/netns/${netns}/resolv.conf` : '';
  return own && existsSync(own) ? own : '/etc/resolv.conf';
}

/** Parse `ip[:port]` lists (config `dnsUpstream`): "198.51.100.53, 203.0.113.1:5353". */
export function parseUpstreams(text: string): Upstream[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((s) => {
      const m = /^(\d+\.\d+\.\d+\.\d+)(?::(\d{1,5}))?$/.exec(s);
      const port = Number(m?.[2] ?? 53);
      if (!m || port < 1 || port > 65535) {
        throw new FormError('CONFIG_INVALID', `Cannot use DNS upstream ${JSON.stringify(s)}: expected ip or ip:port`, {
          hint: 'Set dnsUpstream to a comma list like 198.51.100.53,203.0.113.1:5353, or leave it empty for resolv.conf.',
        });
      }
      ipToInt(m[1] as string);
      return { host: m[1] as string, port };
    });
}

function inCidr(ip: string, cidr: string): boolean {
  try {
    const { network, prefix } = parseCidr(cidr);
    const mask = (0xffffffff << (32 - prefix)) >>> 0;
    return (ipToInt(ip) & mask) >>> 0 === network;
  } catch {
    return false;
  }
}

interface Pending {
  client: RemoteInfo;
  clientId: number;
  query: Buffer;
  qname: string;
  qtype: string;
  tried: number;
  to: Upstream;
  timer: NodeJS.Timeout;
}

/**
 * The guests' resolver, listening on the bridge gateway in the node's namespace: names under the
 * formnet domain are answered from `records` (and never leave the node), everything else is relayed to
 * the upstream resolvers with a fresh random id, accepted back only from the server it was sent to and
 * for the same question (no spoofed answers), each upstream tried in turn with a timeout, SERVFAIL and
 * one log line when none answers. UDP only; clients outside the instance range get no answer.
 *
 * @example
 * const fwd = await startDnsForwarder({ netns: 'n1', host: '10.129.7.1', clientCidr: '10.129.7.0/24',
 *   domain: 'dev.formation.local', records: (n) => names.get(n), logger });
 */
export async function startDnsForwarder(o: DnsForwarderOptions): Promise<DnsForwarder> {
  const log = o.logger.child({ component: 'vmm-dns' });
  const domain = (o.domain ?? '').toLowerCase().replace(/\.$/, '');
  const timeoutMs = o.timeoutMs ?? 2000;
  const maxPending = o.maxPending ?? 512;
  const [sock, up] = (await bindUdpInNetns(o.netns, [`${o.host}:${o.port ?? 53}`, '0.0.0.0:0'])) as [Socket, Socket];
  const pending = new Map<number, Pending>();
  let lastNoneLog = 0;

  let cached: { at: number; list: Upstream[] } | undefined;
  const upstreams = (): Upstream[] => {
    if (o.upstreams) return o.upstreams;
    if (cached && Date.now() - cached.at < 10_000) return cached.list;
    const path = resolvConfPath(o.netns);
    let text = '';
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      log.warn({ path, err: (err as Error).message }, 'cannot read resolv.conf');
    }
    cached = { at: Date.now(), list: parseResolvConf(text, { allowLoopback: !o.netns }) };
    return cached.list;
  };

  const reply = (client: RemoteInfo, pkt: dnsPacket.Packet | Buffer): void => {
    const buf = Buffer.isBuffer(pkt) ? pkt : dnsPacket.encode(pkt);
    sock.send(buf, client.port, client.address);
  };

  async function local(
    query: dnsPacket.DecodedPacket,
    q: dnsPacket.Question,
    qname: string,
  ): Promise<dnsPacket.Packet> {
    const base = { type: 'response' as const, id: query.id ?? 0, questions: [q] };
    const flags =
      dnsPacket.AUTHORITATIVE_ANSWER |
      (query.flag_rd ? dnsPacket.RECURSION_DESIRED : 0) |
      dnsPacket.RECURSION_AVAILABLE;
    if (qname === domain || !o.records) return { ...base, flags: flags | RCODE.NXDOMAIN };
    let ips: string[] | undefined;
    try {
      ips = await o.records(qname.slice(0, -(domain.length + 1)));
    } catch (err) {
      log.error({ err, name: qname }, 'record source failed');
      return { ...base, flags: flags | RCODE.SERVFAIL };
    }
    if (ips === undefined) return { ...base, flags: flags | RCODE.NXDOMAIN };
    if (q.type !== 'A') return { ...base, flags };
    const answers: dnsPacket.Answer[] = ips.map((ip) => ({ type: 'A', name: q.name, ttl: 30, data: ip }));
    const pkt: dnsPacket.Packet = { ...base, flags, answers };
    while (answers.length > 1 && dnsPacket.encodingLength(pkt) > MAX_UDP) answers.pop();
    if (answers.length < ips.length) pkt.flags = (pkt.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE;
    return pkt;
  }

  const servfail = (p: Pending): void => {
    const q = dnsPacket.decode(p.query);
    reply(p.client, {
      type: 'response',
      id: p.clientId,
      flags: RCODE.SERVFAIL | dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions ?? [],
    });
  };

  const sendNext = (id: number, p: Pending): void => {
    const list = upstreams();
    const to = list[p.tried];
    if (!to) {
      pending.delete(id);
      servfail(p);
      if (Date.now() - lastNoneLog > 30_000) {
        lastNoneLog = Date.now();
        log.warn(
          {
            name: p.qname,
            upstreams: list.map((u) => `${u.host}:${u.port}`),
            timeoutMs,
            source: o.upstreams ? 'config' : resolvConfPath(o.netns),
          },
          list.length
            ? 'no upstream DNS server answered: guests get SERVFAIL'
            : 'no upstream DNS server configured: guests get SERVFAIL',
        );
      }
      return;
    }
    if (p.tried > 0) log.debug({ name: p.qname, to: p.to, timeoutMs }, 'upstream did not answer in time');
    p.tried++;
    p.to = to;
    p.timer = setTimeout(() => sendNext(id, p), timeoutMs);
    p.timer.unref();
    up.send(p.query, to.port, to.host, (err) => {
      if (err) log.debug({ err: err.message, to }, 'upstream send failed');
    });
  };

  const forward = (msg: Buffer, query: dnsPacket.DecodedPacket, client: RemoteInfo, q: dnsPacket.Question): void => {
    if (pending.size >= maxPending) {
      reply(client, { type: 'response', id: query.id ?? 0, flags: RCODE.SERVFAIL, questions: [q] });
      return;
    }
    let id = randomInt(0, 65536);
    while (pending.has(id)) id = randomInt(0, 65536);
    const out = Buffer.from(msg);
    out.writeUInt16BE(id, 0);
    const p: Pending = {
      client,
      clientId: query.id ?? 0,
      query: out,
      qname: q.name.toLowerCase().replace(/\.$/, ''),
      qtype: q.type,
      tried: 0,
      to: { host: '', port: 0 },
      timer: setTimeout(() => undefined, 0),
    };
    pending.set(id, p);
    log.debug({ name: p.qname, type: p.qtype, client: client.address }, 'relaying a guest query');
    sendNext(id, p);
  };

  sock.on('message', (msg, rinfo) => {
    if (!inCidr(rinfo.address, o.clientCidr)) return;
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    if (query.type !== 'query') return;
    const q = query.questions?.[0];
    if (!q || (query.questions?.length ?? 0) !== 1) {
      reply(rinfo, { type: 'response', id: query.id ?? 0, flags: RCODE.FORMERR, questions: query.questions ?? [] });
      return;
    }
    const qname = q.name.toLowerCase().replace(/\.$/, '');
    if (domain && (qname === domain || qname.endsWith(`.${domain}`))) {
      local(query, q, qname)
        .then((r) => reply(rinfo, r))
        .catch((err: unknown) => log.error({ err }, 'cannot answer DNS query'));
      return;
    }
    if (o.mayForward && !o.mayForward(rinfo.address)) {
      reply(rinfo, { type: 'response', id: query.id ?? 0, flags: RCODE.REFUSED, questions: [q] });
      return;
    }
    forward(msg, query, rinfo, q);
  });

  up.on('message', (msg, rinfo) => {
    if (msg.length < 12) return;
    const id = msg.readUInt16BE(0);
    const p = pending.get(id);
    if (!p || rinfo.address !== p.to.host || rinfo.port !== p.to.port) return;
    let resp: dnsPacket.DecodedPacket;
    try {
      resp = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const rq = resp.questions?.[0];
    if (resp.type !== 'response' || !rq || rq.name.toLowerCase().replace(/\.$/, '') !== p.qname || rq.type !== p.qtype)
      return;
    clearTimeout(p.timer);
    pending.delete(id);
    const out = Buffer.from(msg);
    out.writeUInt16BE(p.clientId, 0);
    reply(p.client, out);
  });
  sock.on('error', (err) => log.error({ err }, 'DNS forwarder socket error'));
  up.on('error', (err) => log.error({ err }, 'DNS upstream socket error'));
  const addr = sock.address();
  log.info(
    {
      netns: o.netns ?? null,
      address: addr.address,
      port: addr.port,
      domain: domain || null,
      upstreams: o.upstreams ? 'config' : resolvConfPath(o.netns),
    },
    'guest DNS forwarder listening',
  );
  return {
    address: () => ({ address: addr.address, port: addr.port }),
    close: async () => {
      for (const p of pending.values()) clearTimeout(p.timer);
      pending.clear();
      await Promise.all([
        new Promise<void>((r) => sock.close(() => r())),
        new Promise<void>((r) => up.close(() => r())),
      ]);
    },
  };
}
