import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  allocatedBytes,
  netIoFromTapCounters,
  parseBlockstats,
  readTapIo,
  tapCountersFromIpJson,
} from '../src/vm-io.ts';

const dir = mkdtempSync(join(tmpdir(), 'fdg-io-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('parseBlockstats: the drives QEMU reports (d0 root, d1 data); junk and backing entries skipped', () => {
  // Shape of a real QEMU 7.2 reply (trimmed): the backing file entry has no device.
  const reply = [
    {
      device: 'd0',
      qdev: '/machine/peripheral-anon/device[0]/virtio-backend',
      stats: {
        rd_bytes: 20480,
        wr_bytes: 8388608,
        rd_operations: 5,
        wr_operations: 64,
        flush_operations: 3,
        idle_time_ns: 1,
      },
      backing: { stats: { rd_bytes: 1 } },
    },
    { device: 'd1', stats: { rd_bytes: 0, wr_bytes: 512, rd_operations: 0, wr_operations: 1, flush_operations: 0 } },
    { device: '', node_name: '#block123', stats: { rd_bytes: 9 } },
    { device: 'd2,evil', stats: { rd_bytes: 9 } },
    { device: 'd3', stats: { rd_bytes: -5, wr_bytes: 'x' } },
    null,
  ];
  assert.deepEqual(parseBlockstats(reply), [
    { disk: 'root', readBytes: 20480, writtenBytes: 8388608, readOps: 5, writeOps: 64, flushOps: 3 },
    { disk: 'data', readBytes: 0, writtenBytes: 512, readOps: 0, writeOps: 1, flushOps: 0 },
    { disk: 'd3', readBytes: 0, writtenBytes: 0, readOps: 0, writeOps: 0, flushOps: 0 },
  ]);
  assert.deepEqual(parseBlockstats({ error: 'x' }), []);
  assert.deepEqual(parseBlockstats(undefined), []);
});

test('TAP counters are turned to the guest side (the TAP transmits what the guest receives)', () => {
  assert.deepEqual(
    netIoFromTapCounters({
      rx_bytes: 100,
      tx_bytes: 2000,
      rx_packets: 2,
      tx_packets: 20,
      rx_dropped: 0,
      tx_dropped: 3,
    }),
    { rxBytes: 2000, txBytes: 100, rxPackets: 20, txPackets: 2, rxDropped: 3, txDropped: 0 },
  );
  assert.equal(netIoFromTapCounters({}), null);
  const ipJson = JSON.stringify([
    {
      ifname: 'ftap1',
      stats64: { rx: { bytes: 10, packets: 1, dropped: 0 }, tx: { bytes: 70, packets: 3, dropped: 2 } },
    },
  ]);
  assert.deepEqual(netIoFromTapCounters(tapCountersFromIpJson(ipJson)), {
    rxBytes: 70,
    txBytes: 10,
    rxPackets: 3,
    txPackets: 1,
    rxDropped: 2,
    txDropped: 0,
  });
  assert.deepEqual(tapCountersFromIpJson('not json'), {});
});

test('readTapIo reads /sys/class/net/<tap>/statistics (fixture tree); a hostile name reads nothing', async () => {
  const stats = join(dir, 'sys/class/net/ftapab/statistics');
  mkdirSync(stats, { recursive: true });
  for (const [k, v] of Object.entries({
    rx_bytes: 5,
    tx_bytes: 500,
    rx_packets: 1,
    tx_packets: 4,
    rx_dropped: 0,
    tx_dropped: 0,
  })) {
    writeFileSync(join(stats, k), `${v}\n`);
  }
  assert.deepEqual(await readTapIo('ftapab', undefined, join(dir, 'sys')), {
    rxBytes: 500,
    txBytes: 5,
    rxPackets: 4,
    txPackets: 1,
    rxDropped: 0,
    txDropped: 0,
  });
  assert.equal(await readTapIo('../../../etc', undefined, join(dir, 'sys')), null);
  assert.equal(await readTapIo('nosuch', undefined, join(dir, 'sys')), null);
  assert.equal(await readTapIo(undefined, undefined), null);
  assert.equal(await readTapIo('ftapab', 'bad ns;rm'), null);
  // The loopback device of this host is real sysfs: counters are read as numbers.
  const lo = await readTapIo('lo', undefined);
  assert.equal(typeof lo?.rxBytes, 'number');
});

test('allocatedBytes counts allocated blocks, not apparent size (a sparse qcow2 counts what it holds)', async () => {
  const sparse = join(dir, 'sparse.img');
  writeFileSync(sparse, '');
  const { truncateSync } = await import('node:fs');
  truncateSync(sparse, 64 * 1048576);
  const full = join(dir, 'full.img');
  writeFileSync(full, Buffer.alloc(1048576, 1));
  const a = await allocatedBytes([sparse]);
  const b = await allocatedBytes([sparse, full, join(dir, 'missing')]);
  assert.ok(a !== null && a < 1048576, `sparse ${a}`);
  assert.ok(b !== null && b >= 1048576, `with a full MiB ${b}`);
  assert.equal(await allocatedBytes([join(dir, 'missing')]), null);
});
