import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { generateKeyPair, type KeyPair } from '@formation/identity';
import { createLogger } from '@formation/service';
import { MemoryDriver } from '../src/memory-driver.ts';
import { processStats, renderPrometheus, type VmSample } from '../src/metrics.ts';
import { createVmmService, type VmmService } from '../src/service.ts';
import { signedInject } from './api-cases.ts';
import { memoryVmmConfig, SMALL_CAPACITY } from './helpers.ts';
import { memoryFormpack } from './memory-formpack.ts';

/**
 * A strict reader of the Prometheus text format 0.0.4 (what a scraper accepts): HELP/TYPE lines, then
 * samples `name{label="value",…} number` of a declared family. Throws on anything else.
 */
function parseProm(text: string): Map<string, Array<{ labels: Record<string, string>; value: number }>> {
  const families = new Map<string, Array<{ labels: Record<string, string>; value: number }>>();
  const types = new Map<string, string>();
  assert.ok(text.endsWith('\n'), 'ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue;
    let m = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/.exec(line);
    if (m) continue;
    m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      assert.ok(!types.has(m[1] as string), `TYPE ${m[1]} declared twice`);
      types.set(m[1] as string, m[2] as string);
      families.set(m[1] as string, []);
      continue;
    }
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const name = m[1] as string;
    assert.ok(types.has(name), `sample of undeclared family ${name}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/g;
    let consumed = 0;
    for (let l = re.exec(body); l; l = re.exec(body)) {
      labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed += l[0].length;
    }
    assert.equal(consumed, body.length, `bad labels: ${body}`);
    const value = Number(m[4]);
    assert.ok(!Number.isNaN(value), `bad value in ${line}`);
    families.get(name)?.push({ labels, value });
  }
  return families;
}

const sample = (over: Partial<VmSample> = {}): VmSample => ({
  id: 'vm1',
  name: 'web-1',
  owner: '0xabc',
  state: 'running',
  at: 0,
  cpuSeconds: 12.5,
  rssBytes: 300 * 1048576,
  vcpu: 1,
  memMiB: 256,
  diskGiB: 1,
  uptimeSeconds: 60,
  restarts: 0,
  logBytes: 1024,
  ...over,
});

describe('metrics (pure)', () => {
  test('renderPrometheus parses as the text format; labels are escaped; missing values are left out', () => {
    const text = renderPrometheus(
      [sample(), sample({ id: 'vm2', name: 'we"ird\\name', state: 'stopped', cpuSeconds: null, rssBytes: null })],
      { capacity: { vcpu: 8, memMiB: 4096, diskGiB: 50 }, used: { vcpu: 2, memMiB: 512, diskGiB: 2 } },
    );
    const f = parseProm(text);
    assert.deepEqual(f.get('formation_vm_cpu_seconds_total'), [{ labels: { vm: 'vm1', name: 'web-1' }, value: 12.5 }]);
    assert.deepEqual(
      f.get('formation_vm_up')?.map((s) => [s.labels.name, s.value]),
      [
        ['web-1', 1],
        ['we"ird\\name', 0],
      ],
    );
    assert.deepEqual(
      f.get('formation_node_vcpus')?.map((s) => [s.labels.kind, s.value]),
      [
        ['capacity', 8],
        ['used', 2],
      ],
    );
  });

  test('disk and network series: per disk (label disk), allocation, TAP traffic; still parseable', () => {
    const io = {
      disks: [
        { disk: 'root', readBytes: 4096, writtenBytes: 8 * 1048576, readOps: 2, writeOps: 64, flushOps: 1 },
        { disk: 'data', readBytes: 0, writtenBytes: 512, readOps: 0, writeOps: 1, flushOps: 0 },
      ],
      diskAllocatedBytes: 12 * 1048576,
      net: { rxBytes: 1500, txBytes: 900, rxPackets: 10, txPackets: 7, rxDropped: 1, txDropped: 0 },
    };
    const f = parseProm(renderPrometheus([sample(io), sample({ id: 'vm2', net: null, disks: [] })]));
    assert.deepEqual(
      f.get('formation_vm_disk_written_bytes_total')?.map((x) => [x.labels.vm, x.labels.disk, x.value]),
      [
        ['vm1', 'root', 8 * 1048576],
        ['vm1', 'data', 512],
      ],
    );
    assert.deepEqual(f.get('formation_vm_disk_allocated_bytes'), [
      { labels: { vm: 'vm1', name: 'web-1' }, value: 12 * 1048576 },
    ]);
    assert.deepEqual(f.get('formation_vm_network_receive_bytes_total'), [
      { labels: { vm: 'vm1', name: 'web-1' }, value: 1500 },
    ]);
    assert.equal(f.get('formation_vm_network_transmit_packets_total')?.[0]?.value, 7);
    assert.equal(f.get('formation_vm_network_dropped_packets_total')?.[0]?.value, 1);
    assert.equal(f.get('formation_vm_disk_reads_total')?.length, 2);
    const gpus = parseProm(
      renderPrometheus([], {
        capacity: { vcpu: 1, memMiB: 1, diskGiB: 1 },
        used: { vcpu: 0, memMiB: 0, diskGiB: 0 },
        gpus: { capacity: 2, used: 1 },
      }),
    ).get('formation_node_gpus');
    assert.deepEqual(
      gpus?.map((x) => [x.labels.kind, x.value]),
      [
        ['capacity', 2],
        ['used', 1],
      ],
    );
    // Without I/O samples (older callers) the families are absent, not empty.
    assert.equal(parseProm(renderPrometheus([sample()])).has('formation_vm_disk_read_bytes_total'), false);
  });

  test('the parser in this test refuses what a scraper would (so it can fail)', () => {
    assert.throws(() => parseProm('formation_x 1\n'), /undeclared/);
    assert.throws(() => parseProm('# TYPE a gauge\na{b=c} 1\n'), /bad labels/);
    assert.throws(() => parseProm('# TYPE a gauge\na 1'), /newline/);
  });

  test('processStats reads CPU seconds and RSS of a live process; null for none', () => {
    const s = processStats(process.pid);
    assert.ok(s && s.cpuSeconds > 0 && s.rssBytes > 10 * 1048576, JSON.stringify(s));
    assert.equal(processStats(2 ** 22 + 7), null);
  });
});

describe('metrics routes (memory driver): owner-filtered /metrics, per-VM metrics', () => {
  let tmp: string;
  let vmm: VmmService;
  let vmId = '';
  const alice = generateKeyPair();
  const mallory = generateKeyPair();
  const node = generateKeyPair();

  async function call(method: 'GET' | 'POST', url: string, key: KeyPair | null, body?: unknown) {
    const r = await signedInject(vmm.app, key, method, url, body);
    return { status: r.statusCode, text: r.body, type: r.headers['content-type'] };
  }

  before(async () => {
    tmp = mkdtempSync('/tmp/fvmm-metrics-');
    mkdirSync(`${tmp}/images`);
    const id = memoryFormpack(`${tmp}/formpacks`, { id: 'e'.repeat(64), expose: [] });
    vmm = await createVmmService({
      config: memoryVmmConfig(tmp, { capacity: SMALL_CAPACITY }),
      logger: createLogger('silent'),
      driver: new MemoryDriver(),
      access: { operators: [node.publicKey] },
      logs: { pollMs: 0 },
    });
    const r = await call('POST', '/vms', alice, { formpack: id, name: 'web-1', wait: true });
    assert.equal(r.status, 201, r.text);
    vmId = JSON.parse(r.text).id;
  });

  after(async () => {
    await vmm?.manager.destroyAll();
    await vmm?.close({ stopVms: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  test('GET /vms/:id/metrics: the owner gets CPU seconds and RSS of its VM process; another key 404', async () => {
    const r = await call('GET', `/vms/${vmId}/metrics`, alice);
    assert.equal(r.status, 200, r.text);
    const s = JSON.parse(r.text) as VmSample;
    assert.equal(s.id, vmId);
    assert.equal(s.state, 'running');
    assert.ok(s.cpuSeconds !== null && s.cpuSeconds >= 0);
    assert.ok(s.rssBytes !== null && s.rssBytes > 0);
    assert.equal((await call('GET', `/vms/${vmId}/metrics`, mallory)).status, 404);
    assert.equal((await call('GET', `/vms/${vmId}/metrics`, null)).status, 401);
  });

  test('GET /metrics is owner-filtered: the owner sees its VM, another key nothing, the node key all + capacity', async () => {
    const own = await call('GET', '/metrics', alice);
    assert.equal(own.status, 200);
    assert.match(String(own.type), /^text\/plain; version=0\.0\.4/);
    const o = parseProm(own.text);
    assert.deepEqual(
      o.get('formation_vm_up')?.map((x) => x.labels.vm),
      [vmId],
    );
    assert.equal(o.has('formation_node_vcpus'), false);
    const other = parseProm((await call('GET', '/metrics', mallory)).text);
    assert.equal(other.size, 0);
    assert.equal((await call('GET', '/metrics', mallory)).text.includes(vmId), false);
    const op = parseProm((await call('GET', '/metrics', node)).text);
    assert.deepEqual(
      op.get('formation_vm_up')?.map((x) => x.labels.vm),
      [vmId],
    );
    assert.equal(op.get('formation_node_vcpus')?.find((x) => x.labels.kind === 'used')?.value, 1);
    // GPUs this host can pass (none on the memory driver's VMs: used 0), for the node key only.
    assert.equal(op.get('formation_node_gpus')?.find((x) => x.labels.kind === 'used')?.value, 0);
    assert.equal(o.has('formation_node_gpus'), false);
    assert.equal((await call('GET', '/metrics', null)).status, 401);
  });
});
