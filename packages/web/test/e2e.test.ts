// The dashboard end to end: a real node (`form node up --netns`, real QEMU VM, real WireGuard), the web
// service in this process, and Debian's Chromium driven by playwright-core. Sign in with a
// `form web login` link (which delegates to the session's key), build examples/hello-server from the
// picked directory with its live log, ship it, watch SUCCESS appear, read the console, commit, stop,
// start and delete it from the page; a --read-only session gets the commands instead and is refused.
// Screenshots of each page go to test/screenshots; axe-core checks each page.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ProgramRun, requireOrSkip, runProgram } from '@formation/interface/testing';
import { createLogger } from '@formation/service';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { createWebService, UPSTREAM_CALLS, type WebService } from '../src/index.ts';
import { listen } from './fixture.ts';
import { missingInOpenApi } from './openapi.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const pkg = fileURLToPath(new URL('..', import.meta.url));
const formBin = join(root, 'packages/cli/bin/form.js');
const example = join(root, 'examples/hello-server');
const shots = join(pkg, 'test/screenshots');
const CHROMIUM = '/usr/bin/chromium';

const skip = requireOrSkip('web e2e test', {
  root: true,
  programs: ['qemu-system-x86_64', 'wireguard-go', 'mmdebstrap'],
  files: [{ path: CHROMIUM, name: 'chromium (apt-get install chromium)' }],
});

const NS = `fweb${randomBytes(3).toString('hex')}`;
const OFFSET = 200;
let home = ''; // created in before(): a skipped run leaves nothing behind

/** The real CLI against this test's node (its FORM_HOME and port offset). */
const form = (args: string[]): Promise<ProgramRun> =>
  runProgram([process.execPath, formBin, ...args], { FORM_HOME: home, FORM_PORT_OFFSET: String(OFFSET) });
function ok(r: ProgramRun): string {
  assert.equal(r.code, 0, `form failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

const axeSource = readFileSync(join(root, 'node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core on the current page: no serious or critical violations. */
async function checkA11y(page: Page, what: string): Promise<void> {
  // Runtime evaluation is not subject to the page's CSP (which forbids inline scripts).
  await page.evaluate(axeSource);
  const result = (await page.evaluate('axe.run(document)')) as {
    violations: Array<{ id: string; impact: string | null; help: string; nodes: Array<{ target: unknown }> }>;
  };
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} at ${JSON.stringify(v.nodes.map((n) => n.target))}`),
    [],
    `accessibility of ${what}`,
  );
}

describe('web dashboard against a real node in Chromium', { skip, concurrency: false }, () => {
  let web: WebService | undefined;
  let webUrl = '';
  let ctx: BrowserContext | undefined;
  let page: Page;
  let profile = '';
  let distDir = '';
  const cspErrors: string[] = [];

  before(async () => {
    home = mkdtempSync(join(tmpdir(), 'form-web-e2e-'));
    mkdirSync(shots, { recursive: true });
    // Build the front end being tested (4 s), into a temp dir so a stale dist/ cannot be tested instead.
    distDir = mkdtempSync(join(tmpdir(), 'form-web-dist-'));
    execFileSync(
      join(root, 'node_modules/.bin/vite'),
      ['build', '--outDir', distDir, '--emptyOutDir', '--logLevel', 'warn'],
      {
        cwd: pkg,
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    ok(await form(['kit', 'init', '--yes', '--json']));
    ok(await form(['node', 'up', '--netns', NS, '--json']));
    const base = (port: number) => `http://127.0.0.1:${port + OFFSET}`;
    // The dashboard runs as part of the node: its VMM reads (VM lists, consoles) are signed with the node key.
    const { loadKey } = await import('@formation/identity');
    web = await createWebService({
      urls: { formnet: base(3001), vmm: base(3002), pack: base(3003), state: base(3004) },
      nodeKey: await loadKey(join(home, 'node', 'node-key.json')),
      logger: createLogger('warn'),
      staticDir: distDir,
      sampleIntervalMs: 1000,
    });
    webUrl = await listen(web.app);
    profile = mkdtempSync(join(tmpdir(), 'form-web-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1100, height: 760 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(20_000);
    page.on('console', (m) => {
      if (/Content.Security.Policy/i.test(m.text())) cspErrors.push(m.text());
    });
  });

  after(async () => {
    await ctx?.close().catch(() => undefined);
    await web?.close().catch(() => undefined);
    const down = await form(['node', 'down']);
    if (down.code !== 0) process.stderr.write(`form node down: ${down.stderr}\n`);
    for (const d of [home, profile, distDir]) if (d) rmSync(d, { recursive: true, force: true });
    const nsList = execFileSync('ip', ['netns', 'list']).toString();
    assert.ok(!nsList.includes(NS), `namespace ${NS} left behind`);
  });

  test("the dashboard's node API calls exist in the live node's OpenAPI documents", async () => {
    const port = { formnet: 3001, vmm: 3002, pack: 3003, state: 3004 } as const;
    const docs: Record<string, unknown> = {};
    for (const [s, p] of Object.entries(port)) {
      docs[s] = await (await fetch(`http://127.0.0.1:${p + OFFSET}/openapi.json`)).json();
    }
    for (const call of UPSTREAM_CALLS) assert.equal(missingInOpenApi(docs[call.service], call), undefined);
  });

  test('signed out: the sign-in page says to run `form web login`', async () => {
    await page.goto(`${webUrl}/instances`);
    await page.waitForURL(/\/login$/);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.match(await page.locator('main').innerText(), /form web login/);
    await page.screenshot({ path: join(shots, 'signin.png') });
    await checkA11y(page, 'the sign-in page');
  });

  test('a `form web login` link signs in once; the key never reaches the browser', async () => {
    const login = JSON.parse(ok(await form(['web', 'login', '--web', webUrl, '--json']))) as {
      url: string;
      address: string;
    };
    assert.ok(login.url.startsWith(`${webUrl}/login#token=`), login.url);
    await page.goto(login.url);
    await page.waitForURL(/\/instances$/);
    await page.getByText('Signed in as').waitFor();
    assert.equal(await page.locator('header code').getAttribute('title'), login.address);
    // The cookie is httpOnly: page scripts cannot read it.
    assert.equal(await page.evaluate('document.cookie'), '');
    // The same link again is refused, clearly.
    const other = await ctx!.newPage();
    await other.goto(login.url);
    await other.getByRole('alert').waitFor();
    assert.match(await other.getByRole('alert').innerText(), /already used or has expired/);
    await other.close();
  });

  test('keyboard: Tab reaches the skip link, then the navigation', async () => {
    await page.goto(`${webUrl}/instances`);
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Instances');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/formpacks$/);
  });

  test(
    'build the example from its directory with a live log, ship it, reach SUCCESS',
    { timeout: 600_000 },
    async () => {
      await page.getByRole('link', { name: 'Formpacks' }).click();
      await page.waitForURL(/\/formpacks$/);
      // A directory without a Formfile at its top is refused before anything is sent.
      await page.getByLabel('Build directory').setInputFiles(join(root, 'examples'));
      await page
        .getByRole('alert')
        .getByText(/has no Formfile at its top level/)
        .waitFor();
      assert.equal(await page.getByRole('button', { name: 'Build', exact: true }).isDisabled(), true);

      await page.getByLabel('Build directory').setInputFiles(example);
      await page.getByText(/hello-server\/ \(2 files/).waitFor();
      await page.getByRole('button', { name: 'Build', exact: true }).click();
      const log = page.getByRole('log', { name: 'Build log' });
      await log.waitFor();
      await page.getByText(/^done/).waitFor({ timeout: 300_000 });
      assert.match(await log.innerText(), /==> (context|cached)/);
      assert.match(await log.innerText(), /==> done/);
      assert.equal(await page.locator('progress').getAttribute('value'), '9');
      await page.screenshot({ path: join(shots, 'build.png'), fullPage: true });
      await checkA11y(page, 'the Formpacks page after a build');

      await page.getByLabel('Replicas').fill('1');
      await page.getByRole('button', { name: 'Ship', exact: true }).click();
      await page.waitForURL(/\/instances\/[0-9a-f]{32}$/);
      const id = page.url().split('/').at(-1) as string;
      await page.getByRole('link', { name: '← All instances' }).click();
      const row = page.locator('tr[data-instance="hello-server"]');
      await row.waitFor({ timeout: 30_000 });
      await row.getByText('SUCCESS').waitFor({ timeout: 240_000 });
      assert.match(await row.innerText(), /hello-server\.dev\.formation\.local/);
      await page.screenshot({ path: join(shots, 'instances.png') });
      await checkA11y(page, 'the Instances page');

      // The developer owns it, as if shipped with the CLI: `form manage` with the developer key sees it.
      const status = JSON.parse(ok(await form(['manage', 'list', '--json']))) as Array<{ id: string }>;
      assert.deepEqual(
        status.map((i) => i.id),
        [id],
      );

      await row.getByRole('link', { name: 'hello-server' }).click();
      await page.waitForURL(new RegExp(`/instances/${id}$`));
      const replicas = page.locator('table', { has: page.locator('caption', { hasText: 'Replicas' }) });
      await replicas.getByText('healthy').waitFor();
      assert.match(await replicas.innerText(), /10\.129\.\d+\.\d+/);
      // The serial console of the VM, live.
      const consoleLog = page.getByRole('log', { name: /Serial console/ });
      // Polled from here: waitForFunction would evaluate its predicate in the page, which the page's CSP
      // (no 'unsafe-eval') refuses whenever the first check does not already pass.
      const consoleDeadline = Date.now() + 30_000;
      while ((await consoleLog.innerText()).length <= 200) {
        if (Date.now() >= consoleDeadline) {
          const shown = await page.locator('main').innerText();
          assert.fail(`the serial console shows no boot output after 30 s; the page shows: ${shown.slice(0, 1500)}`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.match(await consoleLog.innerText(), /Linux|login|hello/i);
      // The logs stream (what `form logs` shows) has the app's first line; the plots fill in.
      const appLog = page.getByRole('log', { name: /Log lines of this node's replica/ });
      const logDeadline = Date.now() + 30_000;
      while (!/entrypoint hello-server listening on :8080/.test(await appLog.innerText())) {
        if (Date.now() >= logDeadline) assert.fail(`no app line in the logs stream: ${await appLog.innerText()}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      await page.locator('figure.spark figcaption', { hasText: /^CPU \d/ }).waitFor({ timeout: 30_000 });
      await page.locator('figure.spark figcaption', { hasText: /^Disk read / }).waitFor();
      // The encrypted data disk: locked since boot (nobody unlocked it), with the command that would.
      await page.locator('p.disk', { hasText: /^locked — / }).waitFor({ timeout: 30_000 });
      await page.locator('.command code', { hasText: 'form disk unlock hello-server --watch' }).waitFor();
      await page.screenshot({ path: join(shots, 'instance.png'), fullPage: true });
      await checkA11y(page, 'the instance page');
    },
  );

  test('Formpacks: the shipped one, with its Formfile and size', async () => {
    await page.getByRole('link', { name: 'Formpacks' }).click();
    await page.waitForURL(/\/formpacks$/);
    const link = page.getByRole('link', { name: 'hello-server' });
    await link.waitFor();
    await page.screenshot({ path: join(shots, 'formpacks.png') });
    await checkA11y(page, 'the Formpacks page');
    await link.click();
    await page.getByRole('heading', { name: 'Formfile (normalized)' }).waitFor();
    assert.match(await page.locator('pre.json').innerText(), /hello-server/);
    assert.match(await page.locator('dl.facts').innerText(), /MiB|GiB/);
    // The measurement matches what the CLI computes from the Formpack alone.
    const id = page.url().split('/').at(-1) as string;
    const m = JSON.parse(ok(await form(['pack', 'inspect', id, '--measurement', '--json']))) as { digest: string };
    assert.match(await page.locator('dl.facts').innerText(), new RegExp(`sha256:${m.digest}`));
    await page.screenshot({ path: join(shots, 'formpack.png'), fullPage: true });
    await checkA11y(page, 'the Formpack page');
  });

  test('Network: the node in a formnet picture and load plots over time', async () => {
    await page.getByRole('link', { name: 'Network' }).click();
    await page.waitForURL(/\/network$/);
    await page.locator('svg.graph circle').first().waitFor();
    await page.locator('figure.plot').first().waitFor({ timeout: 30_000 });
    // While the instance runs, its vCPU is allocated on this node; the host line is drawn too.
    assert.match(await page.locator('figure.plot figcaption').first().innerText(), /Now: [1-9]\d*%/);
    assert.match((await page.locator('figure.plot path.hostcpu').first().getAttribute('d')) ?? '', /^M[\d.]+,[\d.]+ L/);
    assert.match(await page.locator('table').first().innerText(), /vCPU/);
    await page.screenshot({ path: join(shots, 'network.png'), fullPage: true });
    await checkA11y(page, 'the Network page');
  });

  test('commit, stop and start from the page; the page follows the instance', { timeout: 300_000 }, async () => {
    await page.getByRole('link', { name: 'Instances' }).click();
    await page.getByRole('link', { name: 'hello-server' }).click();
    await page.getByRole('button', { name: 'Commit', exact: true }).click();
    await page.getByText(/Committed revision 1 \(/).waitFor({ timeout: 120_000 });
    await page.locator('dl.facts', { hasText: /Revision\s*1/ }).waitFor({ timeout: 30_000 });

    await page.getByRole('button', { name: 'Stop', exact: true }).click();
    const replicas = page.locator('table', { has: page.locator('caption', { hasText: 'Replicas' }) });
    await replicas
      .locator('td', { hasText: /^stopped$/ })
      .first()
      .waitFor({ timeout: 120_000 });
    assert.match(await page.locator('dl.facts').innerText(), /desired: stopped/);
    await page.getByRole('button', { name: 'Start', exact: true }).click();
    await replicas.getByText('healthy').waitFor({ timeout: 180_000 });
    assert.match(await page.locator('dl.facts').innerText(), /desired: running/);

    // Scale: the button is enabled only for another count; the instance records it.
    const id = page.url().split('/').at(-1) as string;
    const scaleBtn = page.getByRole('button', { name: 'Scale', exact: true });
    assert.equal(await scaleBtn.isDisabled(), true);
    await page.locator('.scale input').fill('2');
    await scaleBtn.click();
    await page.getByText('Asked for 2 replica(s) of hello-server (was 1)').waitFor();
    const after = (await (await page.request.get(`${webUrl}/api/instances/${id}`)).json()) as { replicas: number };
    assert.equal(after.replicas, 2);
    await page.locator('.scale input').fill('1');
    await page.getByRole('button', { name: 'Scale', exact: true }).click();
    await page.getByText('Asked for 1 replica(s) of hello-server (was 2)').waitFor();
  });

  test('a --read-only session sees the commands and is refused actions', async () => {
    const login = JSON.parse(ok(await form(['web', 'login', '--web', webUrl, '--read-only', '--json']))) as {
      url: string;
      canManage: boolean;
    };
    assert.equal(login.canManage, false);
    // A tab of the same browser: the read-only session replaces the cookie until we sign in again below.
    const roPage = await ctx!.newPage();
    try {
      await roPage.goto(login.url);
      await roPage.waitForURL(/\/instances$/);
      await roPage.getByText('(read-only)').waitFor();
      await roPage.getByRole('link', { name: 'hello-server' }).click();
      await roPage.locator('.command code', { hasText: 'form manage stop hello-server' }).waitFor();
      assert.equal(await roPage.getByRole('button', { name: 'Stop', exact: true }).count(), 0);
      const id = roPage.url().split('/').at(-1) as string;
      const res = await roPage.request.post(`${webUrl}/api/instances/${id}/stop`);
      assert.equal(res.status(), 403);
      assert.match((await res.json()).error.message, /read-only/);
    } finally {
      await roPage.close();
    }
    const again = JSON.parse(ok(await form(['web', 'login', '--web', webUrl, '--json']))) as { url: string };
    await page.goto(again.url);
    await page.waitForURL(/\/instances$/);
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    assert.equal(await page.getByText('(read-only)').count(), 0);
  });

  test('delete asks first, then removes the instance', { timeout: 180_000 }, async () => {
    await page.getByRole('link', { name: 'Instances', exact: true }).click();
    await page.getByRole('link', { name: 'hello-server' }).click();
    // VM lists are signed reads: the developer (the instance's owner) sees its VMs.
    const { developerKeyPath, loadKey } = await import('@formation/identity');
    const { ApiClient } = await import('@formation/service/client');
    const vmm = new ApiClient(`http://127.0.0.1:${3002 + OFFSET}`, await loadKey(developerKeyPath(home)));
    const vmsNow = async () => (await vmm.get<{ vms: unknown[] }>('/vms')).vms.length;
    assert.equal(await vmsNow(), 1, 'the instance has its VM before the delete');
    await page.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText(/Delete hello-server\? Every replica/).waitFor();
    await page.getByRole('button', { name: 'Yes, delete' }).click();
    await page.waitForURL(/\/instances$/);
    await page.getByText('You have no instances yet').waitFor({ timeout: 30_000 });
    // The node removes the VM: nothing of it is left in the VMM.
    const deadline = Date.now() + 120_000;
    for (;;) {
      if ((await vmsNow()) === 0) break;
      assert.ok(Date.now() < deadline, 'the deleted instance still has a VM after 120 s');
      await new Promise((r) => setTimeout(r, 1000));
    }
  });

  test('sign out returns to the sign-in page, and the session is gone', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/\/login$/);
    const res = await page.request.get(`${webUrl}/api/instances`);
    assert.equal(res.status(), 401);
    assert.deepEqual(cspErrors, [], 'no Content-Security-Policy violations');
  });
});
