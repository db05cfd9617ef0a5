// How a node's health checks reach its guests when its formnet lives in a network namespace
// (`--netns`, the devnet): formationd itself runs in the host's namespace, where a formnet address
// is not routed to the node's bridge (it would leave by the default route). So each check runs inside
// the namespace: `ip netns exec <ns> curl` for HTTP, a node one-liner's connect for TCP. Both bind a
// source port in PROBE_SOURCE_PORTS, so the VMM's activity counters and wake gate know them for probes
// (scale to zero: a probed replica still goes idle, and a probe does not wake it).
import { execFile } from 'node:child_process';
import { isIPv4 } from 'node:net';
import type { ProbeTransport } from '@formation/ingress';
import { PROBE_SOURCE_PORTS } from '@formation/interface';

const PORTS = `${PROBE_SOURCE_PORTS.first}-${PROBE_SOURCE_PORTS.last}`;

/** The TCP check run in the namespace (argv: address, port, first, last): exit 0 once connected. */
const TCP_CHECK = `const [a, p, f, l] = process.argv.slice(1).map((x, i) => (i ? Number(x) : x));
const go = (n) => { const s = require('node:net').connect({ host: a, port: p, localPort: f + Math.floor(Math.random() * (l - f + 1)) });
  s.once('connect', () => { s.destroy(); process.exit(0); });
  s.once('error', (e) => { if (e.code === 'EADDRINUSE' && n < 8) go(n + 1); else { process.stderr.write(e.code || e.message); process.exit(1); } }); };
go(1);`;

/** The status line curl prints (`-w %{http_code}`): 000 when nothing answered. */
const okStatus = (code: number): boolean => code >= 200 && code <= 399;

function runIn(
  netns: string,
  argv: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ip', ['netns', 'exec', netns, ...argv], { timeout: timeoutMs + 1000 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/**
 * A ProbeTransport whose connections start inside `netns`. Addresses must be IPv4 and ports integers
 * (they come from signed state, and are checked again here before they reach a command line).
 *
 * @example createProber({ transport: netnsTransport('fdr1') })
 */
export function netnsTransport(netns: string): ProbeTransport {
  const bad = (address: string, port: number) =>
    !isIPv4(address) || !Number.isInteger(port) || port < 1 || port > 65535;
  return {
    async http(address, port, path, timeoutMs) {
      if (bad(address, port) || !path.startsWith('/')) return { ok: false, detail: 'bad target' };
      const secs = Math.max(1, Math.ceil(timeoutMs / 1000)).toString();
      const r = await runIn(
        netns,
        [
          'curl',
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '--max-time',
          secs,
          '--local-port',
          PORTS,
          '--',
          `http://${address}:${port}${path}`,
        ],
        timeoutMs,
      );
      const status = Number(r.stdout.trim());
      if (okStatus(status)) return { ok: true };
      if (status > 0) return { ok: false, detail: `status ${status}` };
      const why = r.stderr.trim().replace(/^curl: \(\d+\)\s*/, '');
      return { ok: false, detail: why || `curl exit ${r.code}` };
    },
    async tcp(address, port, timeoutMs) {
      if (bad(address, port)) return { ok: false, detail: 'bad target' };
      const secs = Math.max(1, Math.ceil(timeoutMs / 1000)).toString();
      const r = await runIn(
        netns,
        [
          'timeout',
          secs,
          process.execPath,
          '-e',
          TCP_CHECK,
          address,
          String(port),
          String(PROBE_SOURCE_PORTS.first),
          String(PROBE_SOURCE_PORTS.last),
        ],
        timeoutMs,
      );
      return r.code === 0
        ? { ok: true }
        : {
            ok: false,
            detail: r.code === 124 ? `timeout after ${timeoutMs} ms` : `connect ${r.stderr.trim() || 'failed'}`,
          };
    },
  };
}
