import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createLogger } from '@formation/service';
import * as dnsPacket from 'dns-packet';
import { createDnsResponder, type DnsResponder } from '../src/index.ts';

const names = new Map<string, string[]>([
  ['hello', ['10.129.0.2']],
  ['multi', ['10.129.0.3', '10.129.1.3']],
  ['empty', []],
]);
let dns: DnsResponder;
before(async () => {
  dns = await createDnsResponder({ records: (n) => names.get(n), port: 0, logger: createLogger('silent') });
});
after(async () => dns?.close());

const hasDig = spawnSync('dig', ['-v'], { stdio: 'ignore' }).status === 0;
const requireIntegration = process.env.FORM_REQUIRE_INTEGRATION === '1';

// Async: the responder runs in this process, so a blocking exec would starve it.
async function dig(name: string, type = 'A'): Promise<{ status: string; flags: string; answers: string[] }> {
  const { stdout: out } = await promisify(execFile)(
    'dig',
    [
      `@127.0.0.1`,
      '-p',
      String(dns.address().port),
      name,
      type,
      '+tries=1',
      '+time=2',
      '+noall',
      '+comments',
      '+answer',
    ],
    { encoding: 'utf8' },
  );
  const status = /status: (\w+)/.exec(out)?.[1] ?? '';
  const flags = /flags: ([a-z ]+);/.exec(out)?.[1] ?? '';
  const answers = out
    .split('\n')
    .filter((l) => l && !l.startsWith(';'))
    .map((l) => l.split(/\s+/).at(-1) as string);
  return { status, flags, answers };
}

test(
  'dig gets authoritative A records, NXDOMAIN for unknown names, REFUSED elsewhere',
  { skip: !hasDig && !requireIntegration && 'dig not installed (apt-get install dnsutils)' },
  async () => {
    const ok = await dig('hello.dev.formation.local');
    assert.equal(ok.status, 'NOERROR');
    assert.match(ok.flags, /\baa\b/);
    assert.deepEqual(ok.answers, ['10.129.0.2']);
    assert.deepEqual((await dig('MULTI.dev.formation.local.')).answers.sort(), ['10.129.0.3', '10.129.1.3']);
    const nx = await dig('nobody.dev.formation.local');
    assert.equal(nx.status, 'NXDOMAIN');
    assert.match(nx.flags, /\baa\b/);
    assert.deepEqual(nx.answers, []);
    const nodata = await dig('hello.dev.formation.local', 'AAAA');
    assert.equal(nodata.status, 'NOERROR');
    assert.deepEqual(nodata.answers, []);
    assert.equal((await dig('empty.dev.formation.local')).status, 'NOERROR');
    const other = await dig('example.com');
    assert.equal(other.status, 'REFUSED');
    assert.doesNotMatch(other.flags, /\baa\b/);
  },
);

function query(pkt: Buffer): Promise<dnsPacket.DecodedPacket | undefined> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const t = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, 300);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(dnsPacket.decode(m));
    });
    s.send(pkt, dns.address().port, '127.0.0.1');
  });
}

test('garbage gets no answer and the responder keeps serving', async () => {
  assert.equal(await query(Buffer.from('not a dns packet')), undefined);
  const r = await query(
    dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name: 'hello.dev.formation.local' }] }),
  );
  assert.equal(r?.id, 7);
  assert.equal(r?.flag_aa, true);
  assert.equal((r?.answers?.[0] as { data?: string } | undefined)?.data, '10.129.0.2');
});

test('a failing record source gives SERVFAIL, not a crash', async () => {
  const bad = await createDnsResponder({
    records: () => {
      throw new Error('state down');
    },
    port: 0,
    logger: createLogger('silent'),
  });
  try {
    const r = await new Promise<dnsPacket.DecodedPacket>((resolve) => {
      const s = createSocket('udp4');
      s.on('message', (m) => {
        s.close();
        resolve(dnsPacket.decode(m));
      });
      s.send(
        dnsPacket.encode({ type: 'query', id: 1, questions: [{ type: 'A', name: 'x.dev.formation.local' }] }),
        bad.address().port,
        '127.0.0.1',
      );
    });
    assert.equal((r as unknown as { rcode: string }).rcode, 'SERVFAIL');
  } finally {
    await bad.close();
  }
});
