// A real formationd outside its node namespace (issue 19): formationd runs in fh3<n>f, which plays the
// host's root namespace (public address 198.51.100.11, and formnet routed to a dead-end link with an nft
// counter: the way a leak would go), with `--netns fh3<n>m` (the node namespace it sets up: WireGuard,
// leak guard). A stand-in node's replica of alice's `web` answers at 10.129.77.2 inside fh3<n>m (EXPOSE
// 8080, HEALTHCHECK HTTP /health). The visitor (fh3<n>w, 198.51.100.200) gets the app through
// formationd's ingress, which health-checks and proxies through its dial helper in the node namespace;
// the counter in the "root" namespace stays at 0 (a curl from there, the control, is counted).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { keyPairFromPrivate } from '@formation/identity';
import { requireOrSkip, stopChildren, until } from '@formation/interface/testing';
import { createNetns, deleteNetns, run } from '@formation/net';
import { type StartedFormationd, startFormationd } from './fixtures/formationd.ts';
import { leakedPackets, leakTrap, vethLink } from './fixtures/netns-link.ts';

const sh = promisify(execFile);
const N = process.pid % 1000;
const NS = { root: `fh3${N}f`, node: `fh3${N}m`, vis: `fh3${N}w` };
const PUBLIC = '198.51.100.11';
const REPLICA = '10.129.77.2';
const OFFSET = 4510;
const DEV = fileURLToPath(new URL('./fixtures/netns-ingress-dev.ts', import.meta.url));
const ADMIN_HEX = 'ad'.repeat(32);
const admin = keyPairFromPrivate(ADMIN_HEX);
const skip = requireOrSkip('formationd ingress outside its node namespace', {
  root: true,
  programs: ['ip', 'nft', 'curl', 'wg', 'wireguard-go'],
});

const REPLICA_JS = `let health = 0;
require('node:http').createServer((q, r) => { if (q.url === '/health') health++;
  r.end(q.url === '/count' ? String(health) : 'hello from ' + q.headers.host); })
  .listen(8080, '${REPLICA}', () => console.log('ready'));`;

describe(
  'a formationd in the root namespace with --netns: the ingress proxies from the node namespace',
  { skip },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'fh3-formationd-'));
    const procs: ChildProcess[] = [];
    let node: StartedFormationd | undefined;
    const nodeLog = () => node?.log() ?? '';

    before(async () => {
      for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
      for (const ns of Object.values(NS)) await createNetns(ns);
      await vethLink(
        { dev: `fh3${N}p`, ns: NS.root, addrs: [`${PUBLIC}/24`] },
        { dev: `fh3${N}q`, ns: NS.vis, addrs: ['198.51.100.200/24'] },
      );
      await leakTrap(NS.root, [`fh3${N}d`, `fh3${N}e`]);
      // The stand-in replica, inside the node namespace formationd uses.
      await run('ip', ['addr', 'add', `${REPLICA}/32`, 'dev', 'lo'], { netns: NS.node });
      const app = spawn('ip', ['netns', 'exec', NS.node, process.execPath, '-e', REPLICA_JS], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      procs.push(app);
      await new Promise((resolve) => app.stdout?.once('data', resolve));

      node = await startFormationd({
        ns: NS.root,
        logFile: join(dir, 'node.log'),
        children: procs,
        args: [
          ...['--data-dir', join(dir, 'n'), '--netns', NS.node, '--public-address', PUBLIC],
          ...['--port-offset', String(OFFSET), '--instance-cidr', '10.129.76.0/24', '--admin', admin.publicKey],
        ],
        env: { FORM_WEB: 'off', FORM_PUBLIC_DNS_PORT: '0', FORM_NODE_TIMEOUT_MS: '600000' },
      });
      await sh('ip', [
        ...['netns', 'exec', NS.root, process.execPath, DEV],
        `http://127.0.0.1:${3004 + OFFSET}`,
        ADMIN_HEX,
      ]);
    });

    after(async () => {
      // stopChildren clears its grace timer: a bare 15 s timer kept this file alive 15 s after its tests.
      await stopChildren(procs.reverse(), 15_000);
      for (const ns of Object.values(NS)) await deleteNetns(ns).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    });

    test('health-checked and proxied from the node namespace; nothing sent to formnet from "root"', async () => {
      const host = 'web.dev.formation.local';
      const visit = async () => {
        const { stdout } = await sh('ip', [
          ...['netns', 'exec', NS.vis, 'curl', '-sS', '--max-time', '5', '-H', `Host: ${host}`],
          `http://${PUBLIC}/`,
        ]);
        return stdout;
      };
      // Routed once formationd's ingress prober found the replica healthy (its checks go through the helper).
      await until(
        'the app through the ingress',
        async () => (await visit().catch(() => '')) === `hello from ${host}`,
        60_000,
        250,
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n${nodeLog().slice(-3000)}`);
      });
      for (let i = 0; i < 10; i++) assert.equal(await visit(), `hello from ${host}`);
      const { stdout: count } = await sh('ip', [
        'netns',
        'exec',
        NS.node,
        'curl',
        '-sS',
        `http://${REPLICA}:8080/count`,
      ]);
      assert.ok(Number(count) >= 1, `the replica saw ${count} health checks`);
      assert.equal(await leakedPackets(NS.root), 0, 'no packet to formnet from formationd’s ("root") namespace');
      await sh('ip', ['netns', 'exec', NS.root, 'curl', '-sS', '--max-time', '1', `http://${REPLICA}:8080/`]).catch(
        () => undefined,
      );
      assert.ok((await leakedPackets(NS.root)) > 0, 'the counter sees a direct dial from "root"');
    });
  },
);
