// `form devnet up --local/status/exec/down` through the real CLI: 2 real nodes in namespaces (no VMs).
// The world mode's CLI paths are in packages/cli/test/from-anywhere.test.ts and node's devnet-world test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { integrationPrerequisites } from '@formation/interface';
import { pidAlive } from '@formation/node/light';
import { runForm } from './run-form.ts';

const why = integrationPrerequisites('devnet CLI test', { root: true, programs: ['ip', 'wg', 'wireguard-go', 'ping'] });

const PREFIX = 'fdc';
// Exactly this devnet's namespaces (other helpers' tests use names like fdc<pid>-node).
const OURS = new RegExp(`^${PREFIX}(\\d+|br)(\\s|$)`);

describe('form devnet', { skip: why || false }, () => {
  const home = mkdtempSync(join(tmpdir(), 'form-devnet-cli-'));
  const dir = join(home, 'devnet');
  const env = { FORM_HOME: home };
  const args = ['--dir', dir];

  after(async () => {
    await runForm(['devnet', 'down', ...args], env);
    rmSync(home, { recursive: true, force: true });
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.ok(!left.split('\n').some((l) => OURS.test(l)), `namespaces left: ${left}`);
  });

  test('up --json, status --json, exec (formnet ping), down removes every namespace and process', async () => {
    const up = await runForm(
      ['devnet', 'up', '--local', '--nodes', '2', '--prefix', PREFIX, '--port-base', '250', '--json', ...args],
      env,
    );
    assert.equal(up.code, 0, up.stderr || up.stdout);
    const out = JSON.parse(up.stdout) as {
      nodes: Array<{
        name: string;
        netns: string;
        pid: number;
        portOffset: number;
        apis: { state: string };
        formnetAddress: string;
      }>;
    };
    assert.deepEqual(
      out.nodes.map((n) => [n.name, n.netns, n.portOffset]),
      [
        ['node1', `${PREFIX}1`, 250],
        ['node2', `${PREFIX}2`, 260],
      ],
    );
    for (const n of out.nodes) {
      assert.match(n.formnetAddress, /^10\.128\.\d+\.\d+$/);
      const r = await fetch(`${n.apis.state}/nodes`);
      assert.equal(((await r.json()) as unknown[]).length, 2);
    }

    const st = await runForm(['devnet', 'status', '--json', ...args], env);
    assert.equal(st.code, 0, st.stderr);
    const status = JSON.parse(st.stdout) as { running: boolean; nodes: Array<{ running: boolean; digest: string }> };
    assert.ok(status.running && status.nodes.every((n) => n.running && /^[0-9a-f]{64}$/.test(n.digest)));

    // exec runs inside node1's namespace: node2's formnet address answers over WireGuard.
    const target = out.nodes[1]?.formnetAddress as string;
    let ping = await runForm(['devnet', 'exec', 'node1', ...args, '--', 'ping', '-c', '1', '-W', '2', target], env);
    for (let i = 0; i < 10 && ping.code !== 0; i++) {
      await new Promise((r) => setTimeout(r, 500));
      ping = await runForm(['devnet', 'exec', '1', ...args, '--', 'ping', '-c', '1', '-W', '2', target], env);
    }
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);

    const down = await runForm(['devnet', 'down', ...args], env);
    assert.equal(down.code, 0, down.stderr);
    assert.match(down.stdout, /2 node\(s\) stopped/);
    // Ended (a zombie that PID 1 has not reaped yet has ended too: `form devnet up` has exited, so the
    // daemons it started are PID 1's children).
    for (const n of out.nodes) assert.equal(pidAlive(n.pid), false, `formationd ${n.pid} is gone`);
    const left = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.ok(!left.split('\n').some((l) => OURS.test(l)));
    const again = await runForm(['devnet', 'status', '--json', ...args], env);
    assert.equal((JSON.parse(again.stdout) as { running: boolean }).running, false);
  });
});
