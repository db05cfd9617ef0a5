import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FormError } from '@formation/interface';
import { createLogger } from '@formation/service';
import { type Component, startComponents } from '../src/component.ts';
import { DAEMON_COMPONENTS } from '../src/daemon.ts';
import { type ExtraService, type ExtraServicesContext, startExtraService } from '../src/extra-services.ts';

/** A fake component that records its start and each of its stop steps in `events`. */
function fake(name: string, events: string[], opts: { steps?: number; fail?: unknown; failAfter?: number } = {}) {
  const c: Component<{ seen: string[] }> = {
    name,
    async start(ctx, onStop) {
      events.push(`start ${name}`);
      ctx.seen.push(name);
      const steps = opts.steps ?? 1;
      for (let i = 0; i < steps; i++) {
        if (opts.fail !== undefined && opts.failAfter === i) throw opts.fail;
        onStop(() => {
          events.push(`stop ${name}#${i}`);
        });
      }
      if (opts.fail !== undefined && opts.failAfter === undefined) throw opts.fail;
    },
  };
  return c;
}

test('components start in order with a shared context and stop in reverse, step by step', async () => {
  const events: string[] = [];
  const ctx = { seen: [] as string[] };
  const running = await startComponents([fake('a', events), fake('b', events, { steps: 2 }), fake('c', events)], ctx);
  assert.deepEqual(running.started, ['a', 'b', 'c']);
  assert.deepEqual(ctx.seen, ['a', 'b', 'c']);
  assert.deepEqual(events, ['start a', 'start b', 'start c']);
  await running.stop();
  assert.deepEqual(events.slice(3), ['stop c#0', 'stop b#1', 'stop b#0', 'stop a#0']);
  await running.stop(); // a second stop does nothing
  assert.equal(events.length, 7);
});

test('a start failure stops what was started (its own steps so far too), skips the rest and names the component', async () => {
  const events: string[] = [];
  const cause = new FormError('UNAVAILABLE', 'Cannot start the pack API on 127.0.0.1:3003: the port is in use', {
    hint: 'use --port-offset',
  });
  await assert.rejects(
    startComponents(
      [fake('a', events), fake('b', events, { steps: 3, fail: cause, failAfter: 2 }), fake('c', events)],
      { seen: [] },
    ),
    (err: unknown) => {
      assert.ok(err instanceof FormError);
      assert.equal(err.code, 'UNAVAILABLE');
      assert.equal(err.message, 'b: Cannot start the pack API on 127.0.0.1:3003: the port is in use');
      assert.equal(err.hint, 'use --port-offset');
      assert.deepEqual(err.details, { component: 'b' });
      assert.equal(err.cause, cause);
      return true;
    },
  );
  assert.deepEqual(events, ['start a', 'start b', 'stop b#1', 'stop b#0', 'stop a#0']);
});

test('a plain error keeps its errno code; a failing stop step is reported and the others still run', async () => {
  const events: string[] = [];
  const failures: string[] = [];
  const boom: Component<unknown> = {
    name: 'boom',
    start(_ctx, onStop) {
      onStop(() => {
        throw new Error('close failed');
      });
    },
  };
  const errno = Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' });
  await assert.rejects(
    startComponents(
      [fake('a', events) as Component<unknown>, boom, fake('c', events, { fail: errno }) as Component<unknown>],
      { seen: [] },
      {
        onStopError: (component, err) => failures.push(`${component}: ${(err as Error).message}`),
      },
    ),
    { message: 'c: listen EADDRINUSE', code: 'EADDRINUSE' },
  );
  assert.deepEqual(events, ['start a', 'start c', 'stop c#0', 'stop a#0']);
  assert.deepEqual(failures, ['boom: close failed']);
});

test("formationd's components: unique names, pid files first (removed last), ready last", () => {
  const names = DAEMON_COMPONENTS.map((c) => c.name);
  assert.equal(new Set(names).size, names.length);
  assert.deepEqual(names, [
    'pid-files',
    'identity',
    'netns',
    'state',
    'p2p',
    'admission',
    'pack',
    'vmm',
    'registration',
    'formnet',
    'dns',
    'controller',
    'runtime',
    'ingress',
    'guestTls',
    'publicDns',
    'web',
    'ready',
  ]);
});

test('an optional service that cannot start is skipped (not thrown), keeping what it registered; one that is off is not started', async () => {
  const closes: string[] = [];
  const ctx = {
    logger: createLogger('silent'),
    onClose: () => closes.push('close'),
  } as unknown as ExtraServicesContext;
  let started = 0;
  const failing: ExtraService = {
    name: 'web',
    off: () => null,
    start: async (c) => {
      started++;
      c.onClose(() => {});
      throw new Error('no port');
    },
    notStarted: 'dashboard not started',
  };
  assert.equal(await startExtraService(failing, ctx), 'skipped: no port');
  assert.deepEqual(closes, ['close']);
  assert.equal(await startExtraService({ ...failing, off: () => 'off (FORM_WEB=off)' }, ctx), 'off (FORM_WEB=off)');
  assert.equal(started, 1);
});
