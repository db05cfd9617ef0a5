import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, before, test } from 'node:test';
import { createLogger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { createDnsResponder, type DnsResponder } from '../src/index.ts';

// The `outside` record source: whole names beyond the zone (verified custom domains) answered with
// authority; anything else outside the zone still REFUSED.
let dns: DnsResponder;
before(async () => {
  dns = await createDnsResponder({
    records: (n) => (n === 'hello' ? ['198.51.100.11'] : undefined),
    outside: (fqdn) => (fqdn === 'shop.example.com' ? ['198.51.100.11', '198.51.100.12'] : undefined),
    domain: 'fdi.test',
    port: 0,
    logger: createLogger('silent'),
  });
});
after(async () => dns?.close());

function ask(name: string, type: 'A' | 'TXT' = 'A'): Promise<dnsPacket.DecodedPacket & { rcode?: string }> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.on('message', (m) => {
      s.close();
      resolve(dnsPacket.decode(m) as dnsPacket.DecodedPacket & { rcode?: string });
    });
    s.send(dnsPacket.encode({ type: 'query', id: 3, questions: [{ type, name }] }), dns.address().port, '127.0.0.1');
  });
}
const data = (r: dnsPacket.DecodedPacket) => (r.answers ?? []).map((a) => (a as { data: string }).data);

test('a name the outside source knows is answered with authority', async () => {
  const r = await ask('Shop.Example.com.');
  assert.equal(r.rcode, 'NOERROR');
  assert.equal(r.flag_aa, true);
  assert.deepEqual(data(r), ['198.51.100.11', '198.51.100.12']);
  const txt = await ask('shop.example.com', 'TXT');
  assert.equal(txt.rcode, 'NOERROR');
  assert.deepEqual(data(txt), []);
});

test('other names outside the zone are still refused; the zone still answers', async () => {
  assert.equal((await ask('other.example.com')).rcode, 'REFUSED');
  assert.equal((await ask('example.com')).rcode, 'REFUSED');
  assert.deepEqual(data(await ask('hello.fdi.test')), ['198.51.100.11']);
  assert.equal((await ask('nope.fdi.test')).rcode, 'NXDOMAIN');
});
