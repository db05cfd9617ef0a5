import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { listen, offlineDashboard } from './fixture.ts';

const formBin = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));

test('`form web login` (the real CLI) gets a one-time link that opens a session for its key', async () => {
  const home = mkdtempSync(join(tmpdir(), 'form-web-login-'));
  const web = await offlineDashboard();
  try {
    const url = await listen(web.app);
    // The CLI runs asynchronously: this process serves the dashboard it calls.
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [formBin, ...args],
          { env: { ...process.env, FORM_HOME: home, NO_COLOR: '1' } },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const noKey = await run(['web', 'login', '--web', url]);
    assert.equal(noKey.code, 2, 'no developer key yet');
    assert.match(noKey.stderr, /form kit init/);

    const init = spawnSync(process.execPath, [formBin, 'kit', 'init', '--yes', '--json'], {
      env: { ...process.env, FORM_HOME: home },
    });
    assert.equal(init.status, 0, String(init.stderr));
    const address = JSON.parse(String(init.stdout)).address as string;

    const r = await run(['web', 'login', '--web', url, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { url: string; address: string };
    assert.equal(out.address, address);
    const token = new URL(out.url).hash.replace('#token=', '');
    const s = await web.app.inject({ method: 'POST', url: '/api/session', payload: { token } });
    assert.equal(s.statusCode, 200);
    assert.equal(s.json().address, address);

    const human = await run(['web', 'login', '--web', url]);
    assert.match(human.stdout, new RegExp(`${url}/login#token=`));
    assert.match(human.stdout, /works once/);
  } finally {
    await web.close();
    rmSync(home, { recursive: true, force: true });
  }
});
