// Shared by the rolling update test (rolling-update.test.ts) and `npm run bench -- update`: the hello-server
// variants shipped as successive releases, the `--json` shapes of `form manage get status` / `releases`, and
// the HTTP client loop that sends each request to a replica state lists as available (as the ingress does).
import { execFile } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const example = fileURLToPath(new URL('../../../examples/hello-server', import.meta.url));

export const HEALTHCHECK = 'HEALTHCHECK --interval=3s --timeout=3s --retries=3 --start-period=60s HTTP 8080 /';

/** Node settings for a devnet that rolls quickly (heartbeat, node timeout, drain before a replica is replaced). */
export const ROLLING_NODE_ENV = {
  FORM_HEARTBEAT_MS: '1000',
  FORM_NODE_TIMEOUT_MS: '15000',
  FORM_UPDATE_DRAIN_MS: '2000',
};

export interface Replica {
  node: string;
  state: string;
  formnetIp: string | null;
  release: number | null;
  health: { status: string; release: number; reason: string | null } | null;
}
export interface Status {
  status: string;
  release: number;
  replicas: Replica[];
}
export interface Releases {
  release: number;
  releases: Array<{ release: number; formpackId: string; result: string; failure: string | null; by: string }>;
}

/** A copy of hello-server named `rolling` answering `version <v>`, with an HTTP HEALTHCHECK; `crash` makes its entrypoint exit. */
export function variant(base: string, v: string, crash = false): string {
  const dir = join(base, `v-${v}`);
  cpSync(example, dir, { recursive: true });
  const py = join(dir, 'hello.py');
  writeFileSync(py, readFileSync(py, 'utf8').replace('f"Hello from {socket.gethostname()}!\\n"', `"version ${v}\\n"`));
  let ff = readFileSync(join(dir, 'Formfile'), 'utf8').replace('NAME hello-server', 'NAME rolling');
  ff += `\n${HEALTHCHECK}\n`;
  if (crash)
    ff = ff.replace(
      'ENTRYPOINT ["python3", "/app/hello.py"]',
      'ENTRYPOINT ["python3", "-c", "import sys; sys.exit(3)"]',
    );
  writeFileSync(join(dir, 'Formfile'), ff);
  return dir;
}

/** The replicas of `st` running `release` and reported healthy for it. */
export const availableOn = (st: Status, release: number): Replica[] =>
  st.replicas.filter(
    (r) => r.state === 'running' && r.formnetIp && r.release === release && r.health?.status === 'healthy',
  );

export interface LoopResult {
  ok: number;
  failed: number;
  answers: Record<string, number>;
  errors: string[];
}

/**
 * The client loop, run from `netns` over formnet: each request (curl, 3 s timeout, one every ~100 ms) goes to
 * the next replica `status()` lists as running and healthy (re-read each second); failures are counted, not retried.
 */
export function clientLoop(status: () => Promise<Status>, netns: () => string) {
  return {
    on: false,
    ok: 0,
    failed: 0,
    answers: new Map<string, number>(),
    errors: [] as string[],
    done: Promise.resolve(),
    start() {
      this.on = true;
      this.done = (async () => {
        let i = 0;
        let targets: string[] = [];
        let readAt = 0;
        while (this.on) {
          if (Date.now() - readAt > 1000) {
            const st = await status().catch(() => undefined);
            if (st)
              targets = st.replicas
                .filter((r) => r.state === 'running' && r.formnetIp && r.health?.status === 'healthy')
                .map((r) => r.formnetIp as string);
            readAt = Date.now();
          }
          const ip = targets[i++ % Math.max(1, targets.length)];
          if (!ip) {
            await new Promise((r) => setTimeout(r, 200));
            continue;
          }
          try {
            const { stdout } = await run(
              'ip',
              ['netns', 'exec', netns(), 'curl', '-sS', '--max-time', '3', `http://${ip}:8080/`],
              { timeout: 5000 },
            );
            this.ok++;
            const v = stdout.trim();
            this.answers.set(v, (this.answers.get(v) ?? 0) + 1);
          } catch (err) {
            this.failed++;
            this.errors.push(
              `${ip}: ${String((err as Error).message)
                .split('\n')
                .slice(-2)
                .join(' ')}`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
    },
    async stop(): Promise<LoopResult> {
      this.on = false;
      await this.done;
      const r = { ok: this.ok, failed: this.failed, answers: Object.fromEntries(this.answers), errors: this.errors };
      this.ok = 0;
      this.failed = 0;
      this.answers = new Map();
      this.errors = [];
      return r;
    },
  };
}
