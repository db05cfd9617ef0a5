// The controller's revision path on the memory driver (no root, no QEMU): the owner commits a revision
// another replica made (here: put in this node's revision cache, as fetchRevision leaves it), and this
// node stops its VM, swaps the disk through the VMM (replaceDisk), starts it and reports it running at
// that revision; a later revision whose file is no disk of this driver is reported failed, naming the
// revision, and the VM's disk keeps what it had.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { until } from '@formation/interface/testing';
import type { Op } from '@formation/state';
import { revisionCacheDir } from '../src/replication.ts';
import { type ControllerNode, startControllerNode } from './fixtures/controller-node.ts';

let n: ControllerNode;
const reports: Op[] = [];

before(async () => {
  n = await startControllerNode({ tmpPrefix: '/tmp/fnode-rev-', dataDir: true });
  n.store.onAccepted((op) => {
    if (op.kind === 'instance.status') reports.push(op);
  });
});

after(async () => {
  await n?.close();
});

/** A revision file in this node's cache, named by its sha256 (what a fetch from a peer leaves). */
function cachedRevision(content: string): string {
  const sha256 = createHash('sha256').update(content).digest('hex');
  mkdirSync(revisionCacheDir(n.tmp), { recursive: true });
  writeFileSync(join(revisionCacheDir(n.tmp), `${sha256}.qcow2`), content);
  return sha256;
}

test('a committed revision is swapped into the running replica; a revision that is no disk fails and changes nothing', async () => {
  const { store, dev, vmm, mine, vmOf } = n;
  const id = n.createInstance('web');
  await until('running', () => mine(id)?.state === 'running', 10_000, 25);
  const vmId = vmOf(id)?.id as string;
  assert.equal(mine(id)?.revision, 0);

  // Revision 1: a memory-driver disk (its guest file system as JSON) with a file the Formpack has not.
  const one = cachedRevision(JSON.stringify({ '/etc/hostname': 'web\n', '/srv/revision': 'one\n' }));
  store.author(dev, 'instance.commit', { instanceId: id, revision: 1, hash: one });
  await until('running at revision 1', () => mine(id)?.state === 'running' && mine(id)?.revision === 1, 10_000, 25);
  assert.equal(vmOf(id)?.id, vmId, 'the same VM, its disk swapped');
  assert.equal((await vmm.exec(vmId, '/bin/sh', ['-c', 'cat /srv/revision'])).stdout, 'one\n');
  const applying = reports.find((r) => r.body.instanceId === id && r.body.reason === 'applying revision 1');
  assert.ok(applying, 'the swap was reported (starting, applying revision 1)');
  assert.equal(applying.body.state, 'starting');

  // Revision 2: a file that is no disk of this driver. Refused by the VMM; the replica says why.
  const disk = join(n.tmp, 'vms', vmId, 'qemu', 'disk.json'); // only to look at it here
  const before = readFileSync(disk, 'utf8');
  const two = cachedRevision('not a disk\n');
  store.author(dev, 'instance.commit', { instanceId: id, revision: 2, hash: two });
  await until('failed', () => mine(id)?.state === 'failed', 10_000, 25);
  assert.match(mine(id)?.reason ?? '', /^cannot apply revision 2: .*not a disk of this driver/);
  assert.equal(mine(id)?.revision, 1, 'still at the revision it runs');
  assert.equal(readFileSync(disk, 'utf8'), before, 'the refused revision left the disk as it was');
});
