// Formfile parser benchmarks: Formfiles parsed per second (the hello-server example) and the time to
// validate a 10,000-line Formfile (parse + build-context check of its COPY sources).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseFormfile, validateBuildContext } from '@formation/formfile';
import { report, timeMs } from '../report.ts';

const hello = await readFile(new URL('../../examples/hello-server/Formfile', import.meta.url), 'utf8');

// Warm up the JIT, then parse for about a second.
for (let i = 0; i < 2000; i++) parseFormfile(hello);
let n = 0;
const t0 = performance.now();
while (performance.now() - t0 < 1000) {
  for (let i = 0; i < 100; i++) parseFormfile(hello);
  n += 100;
}
const perSec = n / ((performance.now() - t0) / 1000);
report('formfile.hello_parse_rate', perSec, 'formfiles/s');

// Baseline in the same process: JSON.parse of the normalized spec (same information, no validation).
const json = JSON.stringify(parseFormfile(hello).spec);
let m = 0;
const t1 = performance.now();
while (performance.now() - t1 < 500) {
  for (let i = 0; i < 100; i++) JSON.parse(json);
  m += 100;
}
const jsonPerSec = m / ((performance.now() - t1) / 1000);
report('formfile.hello_parse_vs_json_parse', jsonPerSec / perSec, 'x slower than JSON.parse');

// A 10,000-line Formfile with every kind of instruction, 100 COPY sources on disk.
const dir = await mkdtemp(join(tmpdir(), 'formation-bench-formfile-'));
try {
  await mkdir(join(dir, 'src'));
  for (let i = 0; i < 100; i++) await writeFile(join(dir, 'src', `f${i}.txt`), `${i}\n`);
  const lines = ['NAME big-app', 'VCPU 4', 'MEM 4096', 'DISK 20', 'WORKDIR /srv/app', 'NOCOPY'];
  for (let i = 0; lines.length < 9_999; i++) {
    switch (i % 8) {
      case 0:
        lines.push(`# step ${i}`);
        break;
      case 1:
        lines.push(`RUN echo "step ${i}" >> /var/log/build.log`);
        break;
      case 2:
        lines.push(`INSTALL pkg-${i % 500} lib${i % 300}-dev`);
        break;
      case 3:
        lines.push(`ENV --scope=service:app.service KEY_${i}="value ${i}"`);
        break;
      case 4:
        lines.push(`COPY src/f${i % 100}.txt /srv/app/data/`);
        break;
      case 5:
        lines.push(`EXPOSE ${1024 + (i % 60000)}`);
        break;
      case 6:
        lines.push(`USER username:u${i} passwd:"pw ${i}" sudo:no ssh_pwauth:yes groups:adm,users`);
        break;
      default:
        lines.push(`RUN apt-get install -y \\`, `    tool-${i}`);
    }
  }
  lines.push('ENTRYPOINT ["/srv/app/run", "--port", "8080"]');
  const text = `${lines.slice(0, 10_000).join('\n')}\n`;
  const lineCount = text.split('\n').length - 1;
  // Warm-up run, then the median of 7.
  let copySources = 0;
  const check = async () => {
    const r = parseFormfile(text);
    copySources = r.copy.length;
    if (!r.spec) throw new Error(`bench Formfile is invalid: ${JSON.stringify(r.errors.slice(0, 3))}`);
    const ctxErrors = await validateBuildContext(r, dir, r.copyPositions);
    if (ctxErrors.length) throw new Error(`bench context is invalid: ${ctxErrors[0]!.message}`);
  };
  await check();
  const parseOnly: number[] = [];
  const full: number[] = [];
  for (let i = 0; i < 7; i++) {
    parseOnly.push(await timeMs(() => parseFormfile(text)));
    full.push(await timeMs(check));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  report('formfile.parse_10k_lines', median(parseOnly), 'ms', { lines: lineCount, bytes: Buffer.byteLength(text) });
  report('formfile.validate_10k_lines', median(full), 'ms', { lines: lineCount, copySources });
  // Refusal of a 10 MB input (the size check comes first).
  const huge = 'RUN x\n'.repeat((10 * 1024 * 1024) / 6);
  report('formfile.reject_10mb', await timeMs(() => parseFormfile(huge)), 'ms');
} finally {
  await rm(dir, { recursive: true, force: true });
}
