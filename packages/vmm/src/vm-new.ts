// A new VM (the manager's create): the request resolved (vm-create.ts), a GPU picked, its network
// assigned, the cmdline (instance-neutral for a VM that takes its identity over the agent), the driver's
// VM made, and the record kept and saved in state `created`. Starting it is the manager's.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { FormError } from '@formation/interface';
import type { Logger } from '@formation/service';
import { bootSnapshotPlan, identityByAgent } from './boot-plan.ts';
import { type BootTemplates, neutralCmdline } from './boot-snapshot.ts';
import { fingerprintGpus, pickGpus } from './gpu.ts';
import type { VmManagerOptions } from './manager.ts';
import type { VmRecord } from './types.ts';
import { gpusGiven } from './vm-accounting.ts';
import {
  type CreateVmRequest,
  driverSpec,
  measureSpec,
  resolveBootSource,
  takenAddresses,
  vmName,
  vmResources,
} from './vm-create.ts';

/** What making a VM uses of the manager. */
export interface NewVmHost {
  readonly o: VmManagerOptions;
  readonly log: Logger;
  readonly templates: BootTemplates | undefined;
  /** The VMs the manager has (taken addresses and GPUs). */
  records(): Iterable<VmRecord>;
  /** Keep the new record (before it is saved). */
  add(rec: VmRecord): void;
}

/**
 * Make a VM from a Formpack id or an image name, in state `created` (BAD_REQUEST for a bad request;
 * nothing is left behind when the driver cannot create it). Returns its record.
 */
export async function newVm(h: NewVmHost, req: CreateVmRequest, owner: string | null): Promise<VmRecord> {
  if (Boolean(req.formpack) === Boolean(req.image)) {
    throw new FormError('BAD_REQUEST', 'Cannot create a VM: give exactly one of formpack or image');
  }
  const id = `vm-${randomBytes(6).toString('hex')}`;
  const src = await resolveBootSource(req, h.o);
  const resources = vmResources(src.base, req.resources);
  // A GPU stays given to its VM (running or not) until the VM is destroyed.
  const gpusTaken = new Set(gpusGiven(h.records()));
  const gpus = req.gpu ? pickGpus(fingerprintGpus(), gpusTaken, req.gpu, id) : undefined;
  const name = vmName(req.name, src.defaultName, id);
  const taken = takenAddresses(h.records());
  if (req.egress !== undefined && typeof req.egress !== 'boolean') {
    throw new FormError('BAD_REQUEST', 'Cannot create a VM: egress must be true or false');
  }
  const net = await h.o.network.assign(id, taken, req.forwardPorts ?? src.ports, req.egress !== false);
  // Boot snapshots: a Formpack whose guest is known to wait for its identity gets the neutral cmdline.
  const agentIdentity = identityByAgent(h.templates, src.isFormpack, src.source);
  const fullCmdline = agentIdentity
    ? neutralCmdline(src.cmdline)
    : `${src.cmdline} vm_ip=${net.ip} vm_gw=${net.gateway} vm_dns=${net.dns} vm_name=${name} vm_id=${id}`.trim();
  const spec = driverSpec({
    id,
    name,
    resources,
    dir: join(h.o.store.vmDir(id), 'qemu'),
    src,
    cmdline: fullCmdline,
    dataDiskMiB: req.dataDiskMiB ?? (src.isFormpack ? (h.o.dataDiskMiB ?? 0) : 0),
    net,
    gpus,
  });
  let driverVm: VmRecord['driver'];
  try {
    driverVm = await h.o.driver.create(spec);
  } catch (err) {
    h.o.network.settle(net);
    h.o.store.remove(id);
    throw err;
  }
  const now = new Date().toISOString();
  const rec: VmRecord = {
    id,
    name,
    owner,
    createdAt: now,
    updatedAt: now,
    source: src.source,
    resources,
    state: 'created',
    stateReason: 'created',
    restartPolicy: req.restartPolicy ?? h.o.restartPolicy ?? 'never',
    restarts: 0,
    network: net,
    driver: driverVm,
    snapshots: [],
    serialOffset: 0,
    ready: false,
    ports: [...new Set(req.forwardPorts ?? src.ports)],
    measurement: await measureSpec(spec, src.diskSha),
  };
  // What this VM wants of its Formpack's template (VMs that are not Formpack VMs have none).
  const plan = h.templates ? bootSnapshotPlan(rec, src.cmdline, agentIdentity) : undefined;
  if (plan) rec.bootSnapshot = plan;
  h.add(rec);
  h.o.network.settle(net);
  h.o.store.save(rec);
  h.log.info({ id, name, source: rec.source, resources }, 'vm created');
  return rec;
}
