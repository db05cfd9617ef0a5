// Issue 18 end to end, "from anywhere": a 3-node world devnet (node hosts with public addresses on an
// "internet" bridge, a visitor, a laptop behind NAT) and a developer who only ever acts from the laptop
// namespace through the real CLI (`form devnet exec laptop -- form …`): kit init against a node's public
// address over pinned TLS, ship with 2 replicas, SUCCESS, a permanent formnet join, HTTP and plain
// OpenSSH to the instance over formnet (by IP and by name), the instance calling the visitor, commit by
// name replicated between two hosts, a replica's host killed and the replica healed on the third host,
// `formnet down` leaving nothing. Meanwhile an nftables counter on the internet switch counts plaintext
// HTTP between hosts (it must stay 0; the visitor's plain HTTP is counted apart as the control).
// Real QEMU (TCG here), wireguard-go, namespaces, nftables.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { namespacesLeft, requireOrSkip, sshArgv, tempDevnet, until } from '@formation/interface/testing';
import {
  type DevnetNode,
  type DevnetState,
  devnetDown,
  devnetUp,
  inNetns,
  netnsPids,
  readVisitorLog,
  stopDevnetNode,
  worldNamespaces,
  worldPlan,
} from '@formation/node';
import {
  allAtRevision,
  parseStatus,
  type Replica,
  running,
  type Status,
  successWith,
  untilStatus,
} from './replica-status.ts';
import { runForm } from './run-form.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const PREFIX = 'fdwe';
const LAP = `${PREFIX}lap`;
const NET = `${PREFIX}net`;
const VIS = `${PREFIX}vis`;
const NODE_TIMEOUT_MS = 10_000;

const skip = requireOrSkip('from-anywhere e2e test', {
  root: true,
  programs: ['ip', 'nft', 'qemu-system-x86_64', 'wireguard-go', 'wg', 'sshpass', 'ssh', 'curl', 'mmdebstrap'],
});

/**
 * Plaintext HTTP on the internet switch: TCP payloads starting with an HTTP method or `HTTP`, between
 * any two hosts except the visitor (its plain HTTP is the control that shows the counter works), and
 * TLS records (0x16 0x03: handshakes) to show the API traffic did cross the switch.
 */
const CAPTURE = `table bridge formcapture {
 counter plain_api {}
 counter plain_visitor {}
 counter tls {}
 chain seen {
  type filter hook forward priority 0; policy accept;
  meta l4proto tcp ip daddr 198.51.100.200 @ih,0,32 { 0x47455420, 0x504f5354 } counter name plain_visitor
  meta l4proto tcp ip saddr != 198.51.100.200 ip daddr != 198.51.100.200 @ih,0,32 { 0x47455420, 0x504f5354, 0x50555420, 0x48545450, 0x44454c45, 0x50415443, 0x48454144 } counter name plain_api
  meta l4proto tcp @ih,0,16 0x1603 counter name tls
 }
}
`;

async function counter(name: string): Promise<number> {
  const out = await inNetns(NET, ['nft', '-j', 'list', 'counter', 'bridge', 'formcapture', name]);
  const rows = (JSON.parse(out) as { nftables: Array<{ counter?: { packets: number } }> }).nftables;
  return rows.find((r) => r.counter)?.counter?.packets ?? -1;
}

describe('from anywhere: the developer flow from a laptop behind NAT (3 hosts)', { skip }, () => {
  const devnet = tempDevnet(
    'form-from-anywhere-',
    (dir) =>
      devnetUp({
        nodes: 3,
        dir,
        prefix: PREFIX,
        world: true,
        // Boot templates (and so standbys) off: this file is about reach from other machines, not warm starts,
        // which have their own e2e files. A template build on every node (one more TCG boot and a memory
        // save each, beside the instances' VMs) cost replicas.test ~26 s of its ~136 s here.
        env: {
          FORM_HEARTBEAT_MS: '1000',
          FORM_NODE_TIMEOUT_MS: String(NODE_TIMEOUT_MS),
          FORM_LOG_LEVEL: 'info',
          FORM_BOOT_SNAPSHOTS: 'false',
        },
        timeoutMs: 180_000,
      }),
    devnetDown,
  );
  let s: DevnetState;
  let instanceId = '';
  const byAddress = new Map<string, DevnetNode>();
  const laptop = (args: string[], timeoutMs = 600_000) =>
    runForm(
      ['devnet', 'exec', '--dir', devnet.dir, 'laptop', '--', 'timeout', String(timeoutMs / 1000), ...args],
      {},
      { cwd: root },
    );
  const form = (args: string[], timeoutMs?: number) => laptop(['form', ...args], timeoutMs);
  const ssh = (ip: string, script: string) => laptop(sshArgv(ip, script), 60_000);
  const status = async (): Promise<Status> =>
    parseStatus(await form(['manage', 'get', 'status', instanceId || 'hello-server', '--json'], 60_000));

  before(async () => {
    s = await devnet.up();
    for (const n of s.nodes) byAddress.set(n.info?.nodeAddress as string, n);
    await new Promise<void>((resolve, reject) => {
      const child = execFile('ip', ['netns', 'exec', NET, 'nft', '-f', '-'], (err, _o, stderr) =>
        err ? reject(new Error(stderr)) : resolve(),
      );
      child.stdin?.end(CAPTURE);
    });
  });

  after(async () => {
    if (!devnet.dir) return;
    await devnet.down();
    // By name: another world devnet's namespaces may start with this prefix too.
    assert.deepEqual(await namespacesLeft(worldNamespaces(worldPlan(PREFIX, 3))), [], 'namespaces left');
  });

  test('kit init on the laptop against node 1 public address (https)', async () => {
    const r = await form(['kit', 'init', '--yes', '--node', 'https://198.51.100.11', '--json']);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    // The key lives in the laptop's home, nowhere in the nodes' data dirs.
    assert.ok(existsSync(join(s.world?.laptopHome as string, 'keys', 'developer.json')));
    for (const n of s.nodes) assert.ok(!readdirSync(n.dataDir).includes('keys'));
  });

  test('ship hello-server with 2 replicas: SUCCESS on two hosts', async () => {
    const ship = await form(['pack', 'ship', 'examples/hello-server', '--replicas', '2', '--json']);
    assert.equal(ship.code, 0, `${ship.stdout}${ship.stderr}`);
    instanceId = (JSON.parse(ship.stdout) as { id: string }).id;
    const st = await untilStatus('SUCCESS with 2 running replicas', status, successWith(2), 400_000, 2000);
    assert.equal(new Set(running(st).map((r) => r.node)).size, 2, 'on two different hosts');
  });

  test('form formnet up: a permanent membership from behind NAT; HTTP to the instance over formnet', async () => {
    const up = await form(['formnet', 'up', '--json'], 120_000);
    assert.equal(up.code, 0, `${up.stdout}${up.stderr}`);
    const links = await inNetns(LAP, ['ip', '-br', 'link']);
    assert.match(links, /^formnet0\s/m);
    const st = await status();
    for (const r of running(st)) {
      const route = await inNetns(LAP, ['ip', 'route', 'get', r.formnetIp as string]);
      assert.match(route, /dev formnet0/, 'the instance is reached through the WireGuard interface');
      const body = await until(
        `HTTP ${r.formnetIp}:8080 from the laptop`,
        () => inNetns(LAP, ['curl', '-sS', '--max-time', '5', `http://${r.formnetIp}:8080/`]),
        60_000,
        1000,
      );
      assert.match(body, /Hello from hello-server/);
    }
  });

  test('plain OpenSSH from the laptop: by formnet IP and by name', async () => {
    const ip = running(await status())[0]?.formnetIp as string;
    const byIp = await ssh(ip, 'hostname');
    assert.equal(byIp.code, 0, `${byIp.stdout}${byIp.stderr}`);
    assert.match(byIp.stdout, /hello-server/);
    const byName = await ssh('hello-server.dev.formation.local', 'hostname');
    assert.equal(byName.code, 0, `ssh by name: ${byName.stdout}${byName.stderr}`);
    assert.match(byName.stdout, /hello-server/);
  });

  test('the instance reaches the visitor (NAT out of its host public address)', async () => {
    const st = await status();
    const r = running(st)[0] as Replica;
    const host = byAddress.get(r.node) as DevnetNode;
    const tag = `from-instance-${Date.now()}`;
    // The guest has python3, not curl.
    const get = `import urllib.request as u; print(u.urlopen('http://198.51.100.200/${tag}', timeout=10).read().decode())`;
    const out = await ssh(r.formnetIp as string, `python3 -c "${get}"`);
    assert.equal(out.code, 0, `${out.stdout}${out.stderr}`);
    assert.match(out.stdout, /hello from the visitor/);
    assert.equal(readVisitorLog(s).find((x) => x.url === `/${tag}`)?.from, host.publicAddress);
  });

  test('a visitor opens the app by name through the ingress of every host, also one that runs no replica', async () => {
    for (const n of s.nodes) {
      const body = await until(
        `HTTP via the ingress of ${n.name} (${n.publicAddress})`,
        () =>
          inNetns(VIS, [
            'curl',
            '-sS',
            '--fail',
            '--max-time',
            '5',
            '-H',
            'Host: hello-server.dev.formation.local',
            `http://${n.publicAddress}/`,
          ]),
        60_000,
        1000,
      );
      assert.match(body, /Hello from hello-server/, `through ${n.name}`);
    }
    // A name nobody holds is not routed anywhere.
    const unknown = await inNetns(VIS, [
      'curl',
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '5',
      '-H',
      'Host: nobody.dev.formation.local',
      `http://${s.nodes[0]?.publicAddress}/`,
    ]);
    assert.equal(unknown, '404');
  });

  test('commit by name from the laptop: the revision reaches the replica on the other host', async () => {
    // `form commit <name>` takes the replica of the node the laptop talks to (node 1) when it runs one.
    const both = running(await status());
    const a = (both.find((r) => byAddress.get(r.node)?.index === 1) ?? both[0]) as Replica;
    const b = both.find((r) => r !== a) as Replica;
    const w = await ssh(
      a.formnetIp as string,
      'echo committed-from-the-laptop | sudo tee /app/marker >/dev/null; sync',
    );
    assert.equal(w.code, 0, w.stderr);
    const c = await form(['commit', 'hello-server', '--json'], 300_000);
    assert.equal(c.code, 0, `${c.stdout}${c.stderr}`);
    assert.equal((JSON.parse(c.stdout) as { revision: number }).revision, 1);
    await untilStatus('both replicas at revision 1', status, allAtRevision(2, 1), 300_000, 2000);
    const other = running(await status()).find((r) => r.node === b.node) as Replica;
    const read = await ssh(other.formnetIp as string, 'cat /app/marker');
    assert.match(read.stdout, /committed-from-the-laptop/);
  });

  test('a replica host dies (SIGKILL): the replica heals on the third host from the latest revision', async () => {
    const st = await status();
    const first = s.nodes[0] as DevnetNode;
    // Kill a host the laptop does not talk to (node 1 is its --node).
    const victimReplica = running(st).find((r) => byAddress.get(r.node) !== first) as Replica;
    const victim = byAddress.get(victimReplica.node) as DevnetNode;
    const spare = s.nodes.find((n) => !running(st).some((r) => byAddress.get(r.node) === n)) as DevnetNode;
    assert.ok(victim && spare && victim !== spare);
    await stopDevnetNode(s, victim, 0, { crash: true });
    const healed = await until(
      `a replica on ${spare.name}`,
      async () => {
        const x = await status();
        const r = running(x).find((y) => byAddress.get(y.node) === spare);
        return r && r.revision === 1 ? r : undefined;
      },
      400_000,
      2000,
    );
    const read = await until(
      'the healed replica answers ssh',
      async () => {
        const r = await ssh(healed.formnetIp as string, 'cat /app/marker');
        return r.code === 0 ? r : undefined;
      },
      120_000,
      2000,
    );
    assert.match(read.stdout, /committed-from-the-laptop/);
  });

  test('form formnet down leaves no interface, no wireguard-go, no resolver file', async () => {
    const down = await form(['formnet', 'down'], 60_000);
    assert.equal(down.code, 0, `${down.stdout}${down.stderr}`);
    assert.doesNotMatch(await inNetns(LAP, ['ip', '-br', 'link']), /formnet0/);
    assert.deepEqual(await netnsPids(LAP), [], 'nothing left running in the laptop');
    assert.equal(existsSync(`/etc/netns/${LAP}/resolv.conf`), false);
  });

  test('no plaintext API traffic crossed the internet switch (the visitor control was seen)', async (t) => {
    // Control: the laptop's plain HTTP to the visitor is counted, so the counter works.
    await inNetns(LAP, ['curl', '-sS', '--max-time', '5', 'http://198.51.100.200/control']);
    const [visitor, tls, plain] = [await counter('plain_visitor'), await counter('tls'), await counter('plain_api')];
    t.diagnostic(
      `internet switch: ${plain} plaintext HTTP packets between hosts, ${tls} TLS records, ${visitor} to the visitor`,
    );
    assert.ok(visitor > 0, 'the plaintext control was seen');
    assert.ok(tls > 0, 'TLS records crossed between hosts');
    assert.equal(plain, 0, 'no plaintext HTTP between hosts');
  });
});
