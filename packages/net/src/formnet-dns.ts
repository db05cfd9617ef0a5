import type { Logger } from '@formation/service';
import { createDnsResponder, type DnsResponder, type RecordSource } from './dns.ts';

/**
 * The node's DNS answering on its formnet address, port 53, so members resolve `<name>.<domain>` over
 * WireGuard with a stock resolver (which cannot name a port). Binding needs the address in this
 * process's namespace (a node whose formnet lives in another `--netns` cannot) and the right to bind
 * port 53: when it fails, a warning is logged and the node goes on without it (undefined).
 *
 * @example
 * const d = await startFormnetDns({ address: self.address, domain, records, logger });
 * if (d) cleanups.push(() => d.close());
 */
export async function startFormnetDns(o: {
  address: string;
  domain: string;
  records: RecordSource;
  port?: number;
  logger: Logger;
}): Promise<DnsResponder | undefined> {
  try {
    return await createDnsResponder({
      records: o.records,
      domain: o.domain,
      host: o.address,
      port: o.port ?? 53,
      logger: o.logger,
    });
  } catch (err) {
    o.logger.warn(
      { address: o.address, port: o.port ?? 53, err: (err as Error).message },
      'DNS not answering on the formnet address (members resolve names through the DNS port on the node host only)',
    );
    return undefined;
  }
}
