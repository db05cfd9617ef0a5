// The ingress where a node runs it, in namespaces this test creates (prefix fdg): a visitor at
// 198.51.100.200 reaches the ingress at 198.51.100.11 on the real ports 80 and 443; replicas live at
// formnet addresses 10.129.0.2 and 10.129.0.3 behind it (HTTP on 8080 from `EXPOSE 8080`, TLS on 443 with
// their own certificate). The visitor is plain curl: Host routing, SNI passthrough verified against the
// replica's certificate, and a replica SIGKILLed during a request loop, failed requests counted.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireOrSkip, until } from '@formation/interface/testing';

const skip = requireOrSkip('ingress namespace test', { root: true, programs: ['ip', 'curl', 'openssl'] });
const tag = String(process.pid % 100_000);
const NS = { vis: `fdg-vis-${tag}`, ing: `fdg-ing-${tag}`, be: `fdg-be-${tag}` };
const fixture = (f: string) => new URL(`./fixtures/${f}`, import.meta.url).pathname;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, cmd: string[]) => ['netns', 'exec', ns, ...cmd];

/** A long-lived process in a namespace; resolves once it printed "ready". Output lines go to `lines`. */
function startIn(ns: string, args: string[], lines: string[]): Promise<ChildProcess> {
  const child = spawn('ip', inNs(ns, [process.execPath, ...args]), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
    const parts = out.split('\n');
    out = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr.on('data', (d) => {
    err = (err + d).slice(-4000);
  });
  return until(`${args[0]} ready in ${ns}`, () => lines.includes('ready') && child, 20_000).catch((e) => {
    child.kill('SIGKILL');
    throw new Error(`${(e as Error).message}; stderr: ${err}`);
  });
}

/** curl from the visitor namespace: [http code, body], never throws (code 0 when it failed). */
function curl(args: string[]): [number, string] {
  try {
    const out = execFileSync('ip', inNs(NS.vis, ['curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', ...args]), {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
    const i = out.lastIndexOf('\n');
    return [Number(out.slice(i + 1)), out.slice(0, i)];
  } catch {
    return [0, ''];
  }
}

describe('ingress in namespaces: visitor → 198.51.100.11:80/443 → replicas on formnet', { skip }, () => {
  const children: ChildProcess[] = [];
  let dir: string;
  const ingressLines: string[] = [];
  let replicaB: ChildProcess;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fdg-ingress-ns-'));
    const subject = ['-subj', '/CN=secure.example.test', '-addext', 'subjectAltName=DNS:secure.example.test'];
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    execFileSync(
      'openssl',
      ['req', '-x509', ...ec, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', ...subject],
      {
        stdio: 'ignore',
      },
    );
    for (const ns of Object.values(NS)) {
      ip('netns', 'add', ns);
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // Links are made in the root namespace and moved at once (names carry the tag: nothing collides).
    const link = (a: string, nsA: string, b: string, nsB: string) => {
      ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
      ip('link', 'set', a, 'netns', nsA);
      ip('link', 'set', b, 'netns', nsB);
    };
    link(`fdgv${tag}`, NS.vis, `fdgi${tag}`, NS.ing);
    link(`fdgf${tag}`, NS.ing, `fdgb${tag}`, NS.be);
    const addr = (ns: string, dev: string, a: string) => {
      ip('-n', ns, 'addr', 'add', a, 'dev', dev);
      ip('-n', ns, 'link', 'set', dev, 'up');
    };
    addr(NS.vis, `fdgv${tag}`, '198.51.100.200/24');
    addr(NS.ing, `fdgi${tag}`, '198.51.100.11/24');
    addr(NS.ing, `fdgf${tag}`, '10.129.0.1/24');
    addr(NS.be, `fdgb${tag}`, '10.129.0.2/24');
    ip('-n', NS.be, 'addr', 'add', '10.129.0.3/24', 'dev', `fdgb${tag}`);
    // The visitor knows only the public network; the replicas only formnet (no route to the visitor).
    children.push(await startIn(NS.be, [fixture('backend.ts'), '10.129.0.2', 'A', dir], []));
    replicaB = await startIn(NS.be, [fixture('backend.ts'), '10.129.0.3', 'B', dir], []);
    children.push(replicaB);
    const hc = {
      test: { type: 'http', port: 8080, path: '/' },
      intervalMs: 1000,
      timeoutMs: 1000,
      retries: 1,
      startPeriodMs: 0,
    };
    const instances = [
      {
        id: 'i-hello',
        hosts: ['hello.dev.test'],
        expose: [8080],
        healthchecked: true,
        healthcheck: hc,
        replicas: [
          { id: 'rA', address: '10.129.0.2', running: true },
          { id: 'rB', address: '10.129.0.3', running: true },
        ],
      },
      {
        id: 'i-secure',
        hosts: ['secure.example.test'],
        expose: [443],
        healthchecked: false,
        replicas: [{ id: 'rS', address: '10.129.0.2', running: true }],
      },
    ];
    children.push(
      await startIn(NS.ing, [fixture('node-ingress.ts'), '198.51.100.11', JSON.stringify(instances)], ingressLines),
    );
    await until('both replicas healthy', () => ingressLines.at(-1)?.includes('rA=healthy rB=healthy'), 15_000);
  });

  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const ns of Object.values(NS)) {
      try {
        ip('netns', 'del', ns);
      } catch {}
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('HTTP on :80 by Host reaches both replicas; an unknown host gets 404; the replicas are not reachable directly', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const [code, body] = curl(['-H', 'Host: hello.dev.test', 'http://198.51.100.11/']);
      assert.equal(code, 200);
      assert.match(body, /^[AB] host=hello\.dev\.test$/);
      seen.add(body[0]!);
    }
    assert.deepEqual([...seen].sort(), ['A', 'B']);
    assert.deepEqual(curl(['-H', 'Host: nobody.dev.test', 'http://198.51.100.11/']), [
      404,
      'No instance is served at nobody.dev.test here.\n',
    ]);
    assert.equal(curl(['--max-time', '2', 'http://10.129.0.2:8080/'])[0], 0, "formnet is not the visitor's network");
  });

  test("HTTPS on :443: curl verifies the REPLICA's own certificate by name (the ingress holds no key)", () => {
    const https = (name: string) =>
      curl(['--cacert', join(dir, 'cert.pem'), '--resolve', `${name}:443:198.51.100.11`, `https://${name}/pay`]);
    assert.deepEqual(https('secure.example.test'), [200, 'A over tls: GET /pay HTTP/1.1']);
    assert.deepEqual(https('other.example.test'), [0, ''], 'an unknown name: the connection is closed');
  });

  test('a replica killed (SIGKILL) during a request loop: traffic moves to the other; failures counted', async () => {
    let failed = 0;
    let ok = 0;
    const by = { A: 0, B: 0 };
    const once = () => {
      const [code, body] = curl(['-H', 'Host: hello.dev.test', 'http://198.51.100.11/']);
      if (code === 200) {
        ok++;
        by[body[0] as 'A' | 'B']++;
      } else failed++;
    };
    for (let i = 0; i < 10; i++) once();
    assert.ok(by.A > 0 && by.B > 0);
    const killedAt = Date.now();
    replicaB.kill('SIGKILL');
    let outAfterMs = 0;
    await until(
      'B out',
      () => {
        once();
        if (ingressLines.at(-1)?.includes('rB=unhealthy')) outAfterMs = Date.now() - killedAt;
        return outAfterMs > 0;
      },
      15_000,
      0,
    );
    const bAtOut = by.B;
    for (let i = 0; i < 20; i++) once();
    console.log(`netns kill: ${failed} failed of ${ok + failed} curl requests; B out ${outAfterMs} ms after SIGKILL`);
    assert.equal(by.B, bAtOut, 'nothing reached B after it was out');
    // New connections to a killed replica are refused and retried on A; only a request in flight on B at
    // the moment of the kill can fail (one loop, so at most one).
    assert.ok(failed <= 1, `${failed} failed`);
  });
});
