// Replicas across nodes on a real 4-node devnet through the real `form` CLI: ship with 3 replicas →
// three VMs on three different nodes (the Formpack fetched from the building node), each answering
// HTTP at its formnet address from every node; a file committed on one replica is read on the others;
// a node that dies loses its replica to the fourth node (started from the latest revision), and when it
// returns the stand-in replica is stopped; scaling down stops a replica and shipping again with more
// replicas brings it back. Real QEMU (TCG here), wireguard-go, namespaces.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { integrationPrerequisites } from '@formation/interface';
import { namespacesLeft, sshArgv, tempDevnet, until } from '@formation/interface/testing';
import {
  type DevnetNode,
  type DevnetState,
  devnetDown,
  devnetUp,
  setUnderlayLink,
  startDevnetNode,
  stopDevnetNode,
} from '@formation/node';
import { allAtRevision, parseStatus, running, type Status, successWith, untilStatus } from './replica-status.ts';
import { runForm } from './run-form.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../..', import.meta.url));
const example = join(root, 'examples/hello-server');
const why = integrationPrerequisites('replicas test', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'sshpass', 'curl', 'mmdebstrap'],
});

const PREFIX = 'fdq';
const PORT_BASE = Number(process.env.FORM_TEST_REPLICAS_PORT_BASE ?? 170);
const NODE_TIMEOUT_MS = 8000;

async function inNs(netns: string, cmd: string[], timeoutMs = 20_000): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, ...cmd], { timeout: timeoutMs });
  return stdout;
}

const ssh = (netns: string, ip: string, script: string) => inNs(netns, sshArgv(ip, script));

describe('replicas across a 4-node devnet', { skip: why || false }, () => {
  const home = mkdtempSync(join(tmpdir(), 'form-replicas-'));
  const devnet = tempDevnet(
    'form-replicas-devnet-',
    (dir) =>
      devnetUp({
        nodes: 4,
        dir,
        prefix: PREFIX,
        portBase: PORT_BASE,
        // Boot templates (and so standbys) off: this file is about replicas across nodes, not warm starts,
        // which have their own e2e files. A template build on every node (one more TCG boot and a memory
        // save each, beside the instances' VMs) cost replicas.test ~26 s of its ~136 s here.
        env: {
          FORM_HEARTBEAT_MS: '1000',
          FORM_NODE_TIMEOUT_MS: String(NODE_TIMEOUT_MS),
          FORM_LOG_LEVEL: 'info',
          FORM_BOOT_SNAPSHOTS: 'false',
        },
      }),
    devnetDown,
  );
  let s: DevnetState;
  let id = '';
  /** Node address (0x…) -> devnet node. */
  const byAddress = new Map<string, DevnetNode>();
  const env = (n: DevnetNode) => ({ FORM_HOME: home, FORM_PORT_OFFSET: String(n.portOffset) });
  const node1 = () => s.nodes[0] as DevnetNode;
  const status = async (n: DevnetNode = node1()): Promise<Status> =>
    parseStatus(await runForm(['manage', 'get', 'status', id, '--json'], env(n)));

  before(async () => {
    s = await devnet.up();
    for (const n of s.nodes) byAddress.set(n.info?.nodeAddress as string, n);
    const init = await runForm(['kit', 'init', '--yes'], { FORM_HOME: home });
    assert.equal(init.code, 0, init.stderr);
  });

  after(async () => {
    await devnet.down();
    if (process.env.FORM_KEEP_TEST_DATA !== '1') rmSync(home, { recursive: true, force: true });
    assert.deepEqual(await namespacesLeft(PREFIX), [], 'namespaces left');
  });

  test('ship with 3 replicas: three VMs on three nodes, each answering HTTP at its formnet address', async () => {
    const build = await runForm(['pack', 'build', example], env(node1()));
    assert.equal(build.code, 0, build.stderr);
    const ship = await runForm(['pack', 'ship', example, '--replicas', '3', '--json'], env(node1()));
    assert.equal(ship.code, 0, ship.stderr);
    id = (JSON.parse(ship.stdout) as { id: string }).id;
    const st = await untilStatus('SUCCESS with 3 running replicas', status, successWith(3), 300_000);
    const nodes = running(st).map((r) => r.node);
    assert.equal(new Set(nodes).size, 3, 'three different nodes');
    // Every node's state says the same (any node can be asked).
    const st4 = await status(s.nodes[3]);
    assert.deepEqual(
      running(st4)
        .map((r) => r.node)
        .sort(),
      [...nodes].sort(),
    );
    // Each replica answers HTTP at its formnet address, from every node's namespace (over WireGuard).
    for (const r of running(st)) {
      const host = byAddress.get(r.node);
      assert.ok(host, `replica on a devnet node (${r.node})`);
      assert.ok(
        r.formnetIp?.startsWith(host.instanceCidr.replace(/0\/24$/, '')),
        `${r.formnetIp} in ${host.instanceCidr}`,
      );
      for (const from of s.nodes) {
        // Reported running means its entrypoint has run 2 s; under TCG with three VMs booting (and the
        // nodes' template builds starting) the first answer over WireGuard can take longer than one
        // 10 s curl (CI failed so once): asked again for up to 60 s, and how long it took is printed.
        const t0 = Date.now();
        const body = await until(
          `${r.formnetIp} to answer from ${from.netns}`,
          () => inNs(from.netns, ['curl', '-sf', '-m', '5', `http://${r.formnetIp}:8080/`]).catch(() => undefined),
          60_000,
          1000,
        );
        if (Date.now() - t0 > 5000)
          process.stdout.write(`# ${r.formnetIp} from ${from.netns}: ${Date.now() - t0} ms\n`);
        assert.match(body, /Hello from hello-server/);
      }
    }
  });

  test('a file committed on one replica is read on the others (every replica reports the revision)', async () => {
    const st = await status();
    const [first, ...others] = running(st);
    assert.ok(first && others.length === 2);
    const host = byAddress.get(first.node) as DevnetNode;
    const marker = `committed-${Date.now()}`;
    await ssh(host.netns, first.formnetIp as string, `echo ${marker} > ~/note.txt && sync`);
    const commit = await runForm(['commit', first.formnetIp as string, '--json'], env(host));
    assert.equal(commit.code, 0, commit.stderr);
    assert.equal((JSON.parse(commit.stdout) as { revision: number }).revision, 1);
    const after = await untilStatus('every replica at revision 1', status, allAtRevision(3, 1), 240_000);
    for (const r of running(after).filter((x) => x.node !== first.node)) {
      const out = await ssh(node1().netns, r.formnetIp as string, 'cat ~/note.txt');
      assert.equal(out.trim(), marker, `the committed file on the replica at ${r.formnetIp}`);
    }
  });

  test('a node that dies: its replica comes back on the spare node (from the latest revision); back, the stand-in stops', async () => {
    const st = await status();
    const used = new Set(running(st).map((r) => r.node));
    const spare = s.nodes.find((n) => !used.has(n.info?.nodeAddress as string)) as DevnetNode;
    assert.ok(spare, 'one node holds no replica');
    // Kill a node that holds a replica but is not node 1 (we ask node 1 for status).
    const victim = s.nodes.find((n) => n !== node1() && used.has(n.info?.nodeAddress as string)) as DevnetNode;
    const victimAddress = victim.info?.nodeAddress as string;
    const spareAddress = spare.info?.nodeAddress as string;
    const t0 = Date.now();
    await stopDevnetNode(s, victim, 10_000, { crash: true });
    await setUnderlayLink(s, victim, false);
    const healed = await until(
      'a running replica on the spare node',
      async () => {
        const x = await status();
        const r = running(x).find((y) => y.node === spareAddress);
        return r && r.revision === 1 ? r : undefined;
      },
      240_000,
      1000,
    );
    const healMs = Date.now() - t0;
    assert.ok(healMs > NODE_TIMEOUT_MS / 2, `not re-placed before the node timeout (${healMs} ms)`);
    // Started from the latest committed revision: the file is there.
    const note = await ssh(node1().netns, healed.formnetIp as string, 'cat ~/note.txt');
    assert.match(note, /^committed-/);

    // The node comes back: it restarts its replica, and the stand-in on the spare node goes.
    await setUnderlayLink(s, victim, true);
    await startDevnetNode(s, victim);
    const final = await untilStatus(
      'the returning node runs its replica and the spare stopped',
      status,
      (x) =>
        running(x).some((r) => r.node === victimAddress) &&
        !running(x).some((r) => r.node === spareAddress) &&
        running(x).length === 3,
      240_000,
    );
    const standIn = final.replicas.find((r) => r.node === spareAddress);
    assert.equal(standIn?.state, 'stopped');
    assert.match(standIn?.reason ?? '', /no longer placed/);
  });

  test('scale: `form manage scale` to 2 stops one replica; shipping again with --replicas 3 brings it back', async () => {
    const down = await runForm(['manage', 'scale', id, '2', '--json'], env(node1()));
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual(JSON.parse(down.stdout), { ok: true, id, replicas: 2, changed: true });
    const two = await untilStatus('two running replicas', status, successWith(2), 120_000);
    assert.ok(two.replicas.some((r) => r.state === 'stopped' && /no longer placed/.test(r.reason ?? '')));
    const bad = await runForm(['manage', 'scale', id, '17'], env(node1()));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /Cannot scale to 17 replicas: give a whole number from 1 to 16/);

    // The same Formpack again with another replica count scales instead of being a no-op.
    const ship = await runForm(['pack', 'ship', example, '--replicas', '3', '--json'], env(node1()));
    assert.equal(ship.code, 0, ship.stderr);
    const shipped = JSON.parse(ship.stdout) as { id: string; replicas: number; created: boolean; updated: boolean };
    assert.deepEqual([shipped.id, shipped.replicas, shipped.created, shipped.updated], [id, 3, false, true]);
    await untilStatus('three running replicas again', status, (x) => running(x).length === 3, 240_000);
  });
});
