import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runProgram } from '@formation/interface/testing';
import { listen, offlineDashboard } from './fixture.ts';

const formBin = fileURLToPath(new URL('../../cli/bin/form.js', import.meta.url));

test('`form web login` (the real CLI) gets a one-time link that opens a session for its key', async () => {
  const home = mkdtempSync(join(tmpdir(), 'form-web-login-'));
  const web = await offlineDashboard();
  try {
    const url = await listen(web.app);
    // The CLI runs asynchronously: this process serves the dashboard it calls.
    const run = (args: string[]) => runProgram([process.execPath, formBin, ...args], { FORM_HOME: home });
    const noKey = await run(['web', 'login', '--web', url]);
    assert.equal(noKey.code, 2, 'no developer key yet');
    assert.match(noKey.stderr, /form kit init/);

    const init = await run(['kit', 'init', '--yes', '--json']);
    assert.equal(init.code, 0, init.stderr);
    const address = JSON.parse(init.stdout).address as string;

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
