// Runtime bench: ANS-104 verification per second by signature type (no root needed), then spawn
// time, apply latency (p50/p99) and throughput for JS and Lua processes (raw container, and through
// the manager with the Redis message log), checkpoint/restore time and size. The container parts
// need root, runc and redis-server. One JSON line per metric (see bench/report.ts).
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ArweaveSigner, createData, EthereumSigner, HexSolanaSigner, SolanaSigner } from '@dha-team/arbundles';
import { generateKeyPair } from '@formation/identity';
import {
  buildJsRuntimeImage,
  buildLuaRuntimeImage,
  ContainerVm,
  createRuntimeService,
  decodeCheckpoint,
  ImageStore,
  jsRuntimeModule,
  loadRuntimeConfig,
  luaRuntimeModule,
  type Meta,
  RuncContainer,
  runcUnavailable,
  verifyDataItem,
} from '@formation/runtime';
import { createLogger } from '@formation/service';
import { report, timeMs } from '../report.ts';

// ---- data-item verification per second, by signature type (items made by arbundles) ----
function base58(bytes: Uint8Array): string {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  let n = BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
  let out = '';
  while (n > 0n) {
    out = alphabet[Number(n % 58n)] + out;
    n /= 58n;
  }
  return out;
}
{
  const jwk = generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey.export({ format: 'jwk' });
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
  const secret = base58(Buffer.concat([Buffer.from(ed.d ?? '', 'base64url'), Buffer.from(ed.x ?? '', 'base64url')]));
  const eth = generateKeyPair();
  const signers = [
    ['arweave', new ArweaveSigner(jwk as never)],
    ['ed25519', new SolanaSigner(secret)],
    ['ethereum', new EthereumSigner(Buffer.from(eth.privateKey).toString('hex'))],
    ['solana', new HexSolanaSigner(secret)],
  ] as const;
  const tags = [
    { name: 'Data-Protocol', value: 'ao' },
    { name: 'Type', value: 'Message' },
    { name: 'Action', value: 'Inc' },
  ];
  for (const [name, signer] of signers) {
    const item = createData('x'.repeat(1024), signer, { tags, target: 'P'.repeat(43) });
    await item.sign(signer);
    const raw = Buffer.from(item.getRaw());
    verifyDataItem(raw);
    const n = name === 'ethereum' ? 200 : 1000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) verifyDataItem(raw);
    const ms = performance.now() - t0;
    report(`runtime.verify_per_s_${name}`, (n / ms) * 1000, 'items/s', { n, itemBytes: raw.length });
  }
}

const reason = await runcUnavailable();
if (reason) {
  console.error(`runtime bench skipped: ${reason}`);
  process.exit(0);
}
const logger = createLogger('silent');
const work = mkdtempSync('/var/tmp/formation-runtime-bench-');
const CACHE = '/var/tmp/formation-runtime-cache';

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};

const SRC = `
State.count = State.count ?? 0;
State.items = State.items ?? {};
Handlers.add('inc', 'Inc', (msg) => { State.count += Number(msg.Data || 1); return State.count; });
Handlers.add('fill', 'Fill', (msg) => {
  const n = Number(msg.Data);
  for (let i = 0; i < n; i++) State.items['k' + i] = 'v'.repeat(100) + i;
  for (let i = 0; i < 100; i++) Workspace.write('files/f' + i + '.txt', 'x'.repeat(1000) + i);
  return Object.keys(State.items).length;
});
`;
const LUA_SRC = `
Count = 0
Handlers.add('inc', 'Inc', function(msg) Count = Count + tonumber(msg.Data or '1'); print(Count) end)
`;
const meta = (pid: string, seq: number, action: string, data = ''): Meta => ({
  itemId: `m${seq}`,
  processId: pid,
  action,
  sender: 'bench',
  sequence: seq,
  nonce: seq,
  timestamp: 1_700_000_000_000 + seq,
  params: {},
  data,
  mode: 'apply',
});

let redis: ReturnType<typeof spawn> | undefined;
const containers: RuncContainer[] = [];
try {
  let built = await buildJsRuntimeImage(CACHE);
  const buildMs = await timeMs(async () => {
    built = await buildJsRuntimeImage(join(work, 'fresh-cache'));
  });
  report('runtime.image_build_ms', buildMs, 'ms', { archiveMiB: Math.round(statSync(built.archive).size / 2 ** 20) });
  const store = new ImageStore(join(work, 'images'), logger);
  let img = await store.import(built.archive);
  report(
    'runtime.image_import_ms',
    await timeMs(async () => {
      img = await store.import(built.archive, { expectId: built.imageId });
    }),
    'ms',
  );

  let n = 0;
  const newVm = async (pid: string) => {
    const id = `formrt-bench-${process.pid}-${n++}`;
    const c = new RuncContainer({
      id,
      runcRoot: join(work, 'runc'),
      bundleDir: join(work, 'c', id),
      rootfs: img.rootfs,
      image: img.config,
      limits: { memoryMiB: 256, cpus: 1, pids: 64 },
      logger,
    });
    containers.push(c);
    await c.start();
    return new ContainerVm(c, pid, 2000);
  };

  // spawn: container start + runtime ready + process spawned
  const spawnTimes: number[] = [];
  for (let i = 0; i < 10; i++) {
    let vm: ContainerVm | undefined;
    spawnTimes.push(
      await timeMs(async () => {
        vm = await newVm(`s${i}`);
        await vm.spawn({ processId: `s${i}`, owner: 'bench', data: SRC, tags: [], cuAddr: 'x' });
      }),
    );
    await vm?.close();
  }
  report('runtime.spawn_ms_p50', pct(spawnTimes, 50), 'ms', { n: spawnTimes.length });
  report('runtime.spawn_ms_max', Math.max(...spawnTimes), 'ms');

  // raw apply over the container socket, with a health round trip as the baseline
  const vm = await newVm('p');
  await vm.spawn({ processId: 'p', owner: 'bench', data: SRC, tags: [], cuAddr: 'x' });
  const health: number[] = [];
  for (let i = 0; i < 500; i++) health.push(await timeMs(() => vm.container.call('/vmm/health', {}, 5000)));
  const N = 3000;
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 1; i <= N; i++) lat.push(await timeMs(() => vm.apply('bench', meta('p', i, 'Inc', '1'))));
  const total = performance.now() - t0;
  report('runtime.apply_ms_p50', pct(lat, 50), 'ms', { n: N, path: 'container socket' });
  report('runtime.apply_ms_p99', pct(lat, 99), 'ms');
  report('runtime.apply_per_s', (N / total) * 1000, 'msg/s');
  report('runtime.apply_over_health_p50_ratio', pct(lat, 50) / pct(health, 50), 'x', { healthMsP50: pct(health, 50) });

  // checkpoint / restore: a small state, then ~1 MB of state + 100 workspace files
  for (const [label, fill] of [
    ['small', 0],
    ['large', 10_000],
  ] as const) {
    if (fill) await vm.apply('bench', meta('p', N + 1, 'Fill', String(fill)));
    let data = '';
    const cpMs = await timeMs(async () => {
      data = await vm.checkpoint();
    });
    const c = decodeCheckpoint(data);
    report(`runtime.checkpoint_ms_${label}`, cpMs, 'ms', {
      bytes: Buffer.byteLength(data),
      stateBytes: c.state.length,
      workspaceBytes: Buffer.from(c.workspace, 'base64').length,
    });
    report(`runtime.restore_in_place_ms_${label}`, await timeMs(() => vm.restore(data)), 'ms');
    let fresh: ContainerVm | undefined;
    report(
      `runtime.restore_fresh_container_ms_${label}`,
      await timeMs(async () => {
        fresh = await newVm('p');
        await fresh.restore(data);
      }),
      'ms',
      { includes: 'container start' },
    );
    await fresh?.close();
  }
  await vm.close();

  // the Lua runtime (AO Lua in WebAssembly): spawn and apply over the container socket
  const luaBuilt = await buildLuaRuntimeImage(CACHE);
  const luaImg = await store.import(luaBuilt.archive, { expectId: luaBuilt.imageId });
  const newLuaVm = async (pid: string) => {
    const id = `formrt-bench-lua-${process.pid}-${n++}`;
    const c = new RuncContainer({
      id,
      runcRoot: join(work, 'runc'),
      bundleDir: join(work, 'c', id),
      rootfs: luaImg.rootfs,
      image: luaImg.config,
      limits: { memoryMiB: 256, cpus: 1, pids: 64 },
      logger,
    });
    containers.push(c);
    await c.start();
    return new ContainerVm(c, pid, 2000);
  };
  const luaSpawn: number[] = [];
  for (let i = 0; i < 10; i++) {
    let lvm: ContainerVm | undefined;
    luaSpawn.push(
      await timeMs(async () => {
        lvm = await newLuaVm(`l${i}`);
        await lvm.spawn({ processId: `l${i}`, owner: 'bench', data: LUA_SRC, tags: [], cuAddr: 'x' });
      }),
    );
    await lvm?.close();
  }
  report('runtime.lua_spawn_ms_p50', pct(luaSpawn, 50), 'ms', { n: luaSpawn.length });
  const lvm = await newLuaVm('lp');
  await lvm.spawn({ processId: 'lp', owner: 'bench', data: LUA_SRC, tags: [], cuAddr: 'x' });
  const LN = 1000;
  const llat: number[] = [];
  const l0 = performance.now();
  for (let i = 1; i <= LN; i++) llat.push(await timeMs(() => lvm.apply('bench', meta('lp', i, 'Inc', '1'))));
  const ltotal = performance.now() - l0;
  report('runtime.lua_apply_ms_p50', pct(llat, 50), 'ms', { n: LN, path: 'container socket' });
  report('runtime.lua_apply_ms_p99', pct(llat, 99), 'ms');
  report('runtime.lua_apply_per_s', (LN / ltotal) * 1000, 'msg/s');
  let lcp = '';
  const lcpMs = await timeMs(async () => {
    lcp = await lvm.checkpoint();
  });
  report('runtime.lua_checkpoint_ms', lcpMs, 'ms', { bytes: Buffer.byteLength(lcp), what: 'whole Lua memory, gzip' });
  report('runtime.lua_restore_in_place_ms', await timeMs(() => lvm.restore(lcp)), 'ms');
  await lvm.close();

  // through the manager: Redis write-ahead log + result, as the API does it
  const port = await new Promise<number>((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
  redis = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--dir', work, '--save', '', '--appendonly', 'yes'],
    { stdio: 'ignore' },
  );
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe' });
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  const svc = await createRuntimeService({
    config: loadRuntimeConfig({
      flags: {
        port: ':0',
        redisURL: `redis://127.0.0.1:${port}/0`,
        nodeName: 'bench',
        nodeURL: 'http://127.0.0.1:8080',
        prvKey: `0x${'22'.repeat(32)}`,
        dataDir: join(work, 'svc'),
        runcRoot: join(work, 'svc-runc'),
        monitorIntervalMs: 0,
      },
    }),
    logger,
  });
  try {
    await svc.images.import(built.archive);
    const mod = await svc.manager.registerModule(jsRuntimeModule(built.imageId));
    let pid = '';
    report(
      'runtime.manager_spawn_ms',
      await timeMs(async () => {
        pid = (await svc.manager.spawn({ module: mod.id, owner: 'bench', data: SRC })).id;
      }),
      'ms',
      { includes: 'image verify + container + spawn + checkpoint 0 + Redis' },
    );
    const M = 2000;
    const mlat: number[] = [];
    const m0 = performance.now();
    for (let i = 0; i < M; i++)
      mlat.push(await timeMs(() => svc.manager.send(pid, { from: 'bench', action: 'Inc', data: '1' })));
    const mt = performance.now() - m0;
    report('runtime.manager_apply_ms_p50', pct(mlat, 50), 'ms', {
      n: M,
      path: 'Redis log + container + Redis result, checkpoint every 100',
    });
    report('runtime.manager_apply_ms_p99', pct(mlat, 99), 'ms');
    report('runtime.manager_apply_per_s', (M / mt) * 1000, 'msg/s');
    // the same through the manager for a Lua process
    await svc.images.import(luaBuilt.archive);
    const luaMod = await svc.manager.registerModule(luaRuntimeModule(luaBuilt.imageId));
    let luaPid = '';
    report(
      'runtime.lua_manager_spawn_ms',
      await timeMs(async () => {
        luaPid = (await svc.manager.spawn({ module: luaMod.id, owner: 'bench', data: LUA_SRC })).id;
      }),
      'ms',
      { includes: 'image verify + container + spawn + checkpoint 0 + Redis' },
    );
    const LM = 1000;
    const lmlat: number[] = [];
    const lm0 = performance.now();
    for (let i = 0; i < LM; i++)
      lmlat.push(await timeMs(() => svc.manager.send(luaPid, { from: 'bench', action: 'Inc', data: '1' })));
    const lmt = performance.now() - lm0;
    report('runtime.lua_manager_apply_ms_p50', pct(lmlat, 50), 'ms', { n: LM });
    report('runtime.lua_manager_apply_ms_p99', pct(lmlat, 99), 'ms');
    report('runtime.lua_manager_apply_per_s', (LM / lmt) * 1000, 'msg/s');
    report('runtime.lua_over_js_manager_apply_p50_ratio', pct(lmlat, 50) / pct(mlat, 50), 'x', {
      note: 'same machine, same run',
    });

    const hostPid = svc.manager.process(pid).container?.hostPid;
    const k0 = performance.now();
    if (hostPid) process.kill(hostPid, 'SIGKILL');
    await svc.manager.send(pid, { from: 'bench', action: 'Inc', data: '1' });
    report('runtime.recover_after_kill_ms', performance.now() - k0, 'ms', {
      includes: 'fresh container + restore + replay of up to 99 messages + the message',
    });
  } finally {
    await svc.close();
  }
} finally {
  for (const c of containers) await c.destroy().catch(() => undefined);
  if (redis) redis.kill('SIGTERM');
  rmSync(work, { recursive: true, force: true });
}
