import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { GUEST_CONTRACT } from '@formation/guest';
import { type KeyPair, NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { errorResponses } from '@formation/interface/error-schema';
import { type ApiServer, type Logger, requireSigner } from '@formation/service';
import { sha256File } from '@formation/service/files';
import { Type } from '@sinclair/typebox';
import { type DiskStatus, parseDiskStatus } from './disk.ts';
import {
  type MeasurementInputs,
  measurementDigest,
  normalizeCmdline,
  sha256Text,
  splitCmdline,
} from './measurement.ts';
import { providers, softwareProvider, type TeeProvider } from './providers.ts';
import { type AttestationReport, REPORT_VERSION, type SignedReport, signReport } from './report.ts';
import { SECRET_NAME_RE, type SealedSecret } from './seal.ts';
import { type GuestTls, parseTlsStatus } from './tls.ts';
import type { AttestableVm, AttestVmSource } from './vm-source.ts';

export interface AttestServiceOptions {
  /** The node key: reports are signed with it (its public key is the node id in state). */
  nodeKey: KeyPair;
  /** The node's VMs (`@formation/vmm`'s `VmManager` is one). */
  vmm: AttestVmSource;
  logger: Logger;
  /** Who may put secrets into a VM (address); default the VM's owner. Null/undefined = nobody. */
  ownerOf?: ((vm: AttestableVm) => string | null | undefined) | undefined;
  provider?: TeeProvider | undefined;
  /** How to read a process's argv (tests); default /proc/<pid>/cmdline. */
  readArgv?: ((pid: number) => string[]) | undefined;
}

/**
 * The node side of attestation: measures what QEMU was actually started with (its argv in /proc:
 * -kernel, -initrd, -append, -smp, -m, and the base disk behind the -drive overlay), asks the guest
 * agent for the guest's key, and signs the report with the node key. Also relays sealed secrets.
 */
export class AttestService {
  private readonly o: AttestServiceOptions;
  private readonly log: Logger;
  private readonly hashes = new Map<string, string>();
  readonly provider: TeeProvider;

  constructor(o: AttestServiceOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'attest' });
    this.provider = o.provider ?? softwareProvider;
  }

  find(ref: string): AttestableVm {
    const vm = this.o.vmm.list().find((v) => v.id === ref || v.name === ref);
    if (!vm) throw new FormError('VM_NOT_FOUND', `Cannot attest ${ref}: no such VM on this node`);
    return vm;
  }

  /** What QEMU booted for `vm`, measured now from its process arguments and the files they name. */
  async measure(vm: AttestableVm): Promise<{ inputs: MeasurementInputs; cmdline: string }> {
    if (vm.pid === null || vm.state !== 'running') {
      throw new FormError('VM_BAD_STATE', `Cannot attest VM ${vm.name}: it is ${vm.state}, not running`);
    }
    const argv = (this.o.readArgv ?? readArgv)(vm.pid);
    const arg = (flag: string): string | undefined => {
      const i = argv.indexOf(flag);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    if (!(arg('-name') ?? '').includes(`guest=${vm.id}`)) {
      throw new FormError('ATTEST_UNAVAILABLE', `Cannot attest VM ${vm.name}: process ${vm.pid} is not its QEMU`);
    }
    const kernel = arg('-kernel');
    const append = arg('-append');
    const drive = arg('-drive');
    if (!kernel || append === undefined || !drive) {
      throw new FormError(
        'ATTEST_UNAVAILABLE',
        `Cannot attest VM ${vm.name}: QEMU was not started by direct kernel boot`,
      );
    }
    const overlay = resolveFdset(/(?:^|,)file=([^,]+)/.exec(drive)?.[1], vm.id, vm.pid);
    const base = overlay ? qcow2Backing(overlay) : null;
    if (!base) throw new FormError('ATTEST_UNAVAILABLE', `Cannot attest VM ${vm.name}: its disk has no base image`);
    const initrd = arg('-initrd');
    const cmdline = normalizeCmdline(append);
    const split = splitCmdline(cmdline);
    const inputs: MeasurementInputs = {
      kernel: await this.hash(kernel),
      initramfs: initrd ? await this.hash(initrd) : null,
      cmdline: sha256Text('error' in split ? cmdline : split.formpack),
      disk: await this.hash(base),
      vcpu: Number.parseInt(arg('-smp') ?? '1', 10),
      memMiB: Number.parseInt(arg('-m') ?? '0', 10),
    };
    return { inputs, cmdline };
  }

  /** The guest's X25519 public key, read through qemu-ga (`form-attest pubkey`). */
  async guestKey(vm: AttestableVm): Promise<{ key: string | null; error: string | null }> {
    try {
      const r = await this.o.vmm.exec(vm.id, GUEST_CONTRACT.attest, ['pubkey'], 15_000);
      const k = r.stdout.trim();
      if (r.exitcode === 0 && /^[0-9a-f]{64}$/.test(k)) return { key: k, error: null };
      return { key: null, error: `form-attest pubkey failed (${r.exitcode}): ${r.stderr.trim().slice(0, 200)}` };
    } catch (err) {
      return { key: null, error: `guest agent: ${(err as Error).message}` };
    }
  }

  /**
   * The guest's HTTPS state (`form-tls status`), or undefined when the image has no in-guest HTTPS
   * (form-tls absent or exit 3) or the agent cannot say.
   */
  async guestTls(vm: AttestableVm): Promise<GuestTls | undefined> {
    try {
      const r = await this.o.vmm.exec(vm.id, GUEST_CONTRACT.tls, ['status'], 30_000);
      if (r.exitcode !== 0) return undefined;
      return parseTlsStatus(r.stdout) ?? undefined;
    } catch {
      return undefined;
    }
  }

  /** A signed report for VM `ref` (id or name) with the verifier's `nonce`. */
  async report(ref: string, nonce: string): Promise<SignedReport> {
    const vm = this.find(ref);
    const m = await this.measure(vm);
    const gk = await this.guestKey(vm);
    const tls = await this.guestTls(vm);
    const report: AttestationReport = {
      version: REPORT_VERSION,
      provider: this.provider.name,
      node: this.o.nodeKey.publicKey,
      vmId: vm.id,
      vmName: vm.name,
      nonce,
      issuedAt: new Date().toISOString(),
      formpackId: vm.source.kind === 'formpack' ? (vm.source.id ?? null) : null,
      measurement: { inputs: m.inputs, digest: measurementDigest(m.inputs), cmdline: m.cmdline },
      guestKey: gk.key,
      guestKeyError: gk.error,
      ...(tls ? { tls } : {}),
      hardware: null,
    };
    this.log.info({ vm: vm.id, digest: report.measurement.digest }, 'attestation report signed');
    return signReport(this.o.nodeKey.privateKey, report);
  }

  /**
   * Hand a sealed secret to the guest. Refused unless `actor` owns the VM and the secret is sealed to
   * the key the guest holds now; the guest itself refuses what it cannot authenticate.
   */
  async putSecret(
    ref: string,
    body: { name: string; recipient: string; sealed: SealedSecret },
    actor: string,
  ): Promise<{ vm: string; path: string; output: string }> {
    const vm = this.find(ref);
    const owner = this.o.ownerOf ? this.o.ownerOf(vm) : vm.owner;
    if (!owner || owner.toLowerCase() !== actor.toLowerCase()) {
      throw new FormError('AUTH_FORBIDDEN', `Cannot put a secret into VM ${vm.name}: ${actor} does not own it`);
    }
    if (!SECRET_NAME_RE.test(body.name)) throw new FormError('BAD_REQUEST', `Cannot store secret: bad name`);
    const gk = await this.guestKey(vm);
    if (gk.key !== body.recipient) {
      throw new FormError(
        'SECRET_REFUSED',
        `Cannot deliver secret ${body.name} to VM ${vm.name}: it is sealed to guest key ${body.recipient.slice(0, 12)}…, ` +
          `but the guest holds ${gk.key ? `${gk.key.slice(0, 12)}…` : `no key (${gk.error})`}`,
        { hint: 'Attest again (`form attest`) and re-seal: the guest may have rebooted.' },
      );
    }
    const s = body.sealed;
    // The disk key makes the guest open (the first time: format) its data disk: slow under TCG.
    const isDiskKey = body.name === GUEST_CONTRACT.diskKeySecret;
    const r = await this.o.vmm.exec(
      vm.id,
      GUEST_CONTRACT.attest,
      ['secret-put', body.name, s.epk, s.iv, s.ct, s.mac],
      isDiskKey ? 200_000 : 30_000,
    );
    if (r.exitcode !== 0) {
      throw new FormError(
        'SECRET_REFUSED',
        `The guest refused ${isDiskKey ? 'the disk key' : `secret ${body.name}`}: ${r.stderr.trim().slice(0, 300)}`,
      );
    }
    this.log.info(
      { vm: vm.id, name: body.name },
      isDiskKey ? 'disk key delivered, disk unlocked' : 'sealed secret delivered',
    );
    return { vm: vm.id, path: `${GUEST_CONTRACT.secretsDir}/${body.name}`, output: r.stdout.trim().slice(0, 1000) };
  }

  /** Lock state of the VM's encrypted data disk, as the guest sees it (`form-disk status`). */
  async diskStatus(ref: string): Promise<DiskStatus> {
    const vm = this.find(ref);
    if (vm.state !== 'running') return { state: 'unknown', error: `the VM is ${vm.state}` };
    try {
      const r = await this.o.vmm.exec(vm.id, GUEST_CONTRACT.disk, ['status'], 15_000);
      if (r.exitcode !== 0) {
        return { state: 'unknown', error: `form-disk status failed (${r.exitcode}): ${r.stderr.trim().slice(0, 200)}` };
      }
      return parseDiskStatus(r.stdout);
    } catch (err) {
      return { state: 'unknown', error: `guest agent: ${(err as Error).message}` };
    }
  }

  private async hash(path: string): Promise<string> {
    const st = statSync(path);
    const key = `${path}:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = this.hashes.get(key);
    if (hit) return hit;
    const h = await sha256File(path);
    this.hashes.set(key, h);
    return h;
  }
}

const Hex = (min: number, max: number) => Type.String({ pattern: `^[0-9a-fA-F]{${min},${max}}$` });

const open = { additionalProperties: true } as const;
/** A report as signed (open: the signature covers every field of `report`, so none may be dropped). */
const SignedReportSchema = Type.Object({
  report: Type.Object(
    {
      version: Type.String(),
      provider: Type.String(),
      node: Type.String({ description: "the signing node's public key" }),
      vmId: Type.String(),
      vmName: Type.String(),
      nonce: Type.String(),
      issuedAt: Type.String(),
    },
    { ...open, description: 'AttestationReport (see the README "Report")' },
  ),
  signature: Type.String(),
});
const DiskStatusSchema = Type.Object(
  { state: Type.String({ description: 'absent | locked | unlocked | unknown' }) },
  { ...open, description: 'DiskStatus: the state, and the device, luks, mount or error when known' },
);
const ProvidersSchema = Type.Object({
  active: Type.String(),
  providers: Type.Array(
    Type.Object({
      name: Type.String(),
      available: Type.Object({ ok: Type.Boolean(), reason: Type.String() }),
      trust: Type.String(),
      protects: Type.Array(Type.String()),
      doesNotProtect: Type.Array(Type.String()),
    }),
  ),
});
const errors = errorResponses(400, 401, 403, 404, 409, 422, 500, 503);

/**
 * Mount the attestation API on a Fastify app (before `app.ready()`): signed routes with the node's
 * NonceCache, so a captured request cannot be replayed.
 *
 *   POST /attest/vms/:ref/report   { nonce }                       → SignedReport
 *   POST /attest/vms/:ref/secrets  { name, recipient, sealed }     → { vm, path, output }
 *   POST /attest/vms/:ref/disk     {}                              → data disk lock state
 *   GET  /attest/providers                                         → providers and what they protect
 */
export function registerAttestRoutes(
  app: ApiServer,
  opts: AttestServiceOptions & { nonces?: NonceCache | undefined },
): AttestService {
  const svc = new AttestService(opts);
  const nonces = opts.nonces ?? new NonceCache();
  const signed = requireSigner(nonces);
  // The lock state is only read: a dashboard session (delegated key) may ask for it too.
  const delegable = requireSigner(nonces, { allowDelegation: true });
  const Ref = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 128 }) });
  app.post(
    '/attest/vms/:ref/report',
    {
      preHandler: signed,
      schema: {
        tags: ['attest'],
        summary: 'Signed attestation report of a VM, bound to the verifier nonce',
        params: Ref,
        body: Type.Object({ nonce: Hex(16, 128) }, { additionalProperties: false }),
        response: { 200: SignedReportSchema, ...errors },
      },
    },
    async (req) => svc.report(req.params.ref, req.body.nonce),
  );
  app.post(
    '/attest/vms/:ref/secrets',
    {
      preHandler: signed,
      schema: {
        tags: ['attest'],
        summary: 'Deliver a secret sealed to the guest’s attested key',
        params: Ref,
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 128 }),
            recipient: Hex(64, 64),
            sealed: Type.Object({
              epk: Type.String({ maxLength: 200 }),
              iv: Hex(32, 32),
              ct: Type.String({ maxLength: 1_000_000 }),
              mac: Hex(64, 64),
            }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ vm: Type.String(), path: Type.String(), output: Type.String() }),
          ...errors,
        },
      },
    },
    async (req) => svc.putSecret(req.params.ref, req.body, req.signer?.address ?? ''),
  );
  app.post(
    '/attest/vms/:ref/disk',
    {
      preHandler: delegable,
      schema: {
        tags: ['attest'],
        summary: 'Lock state of the VM’s encrypted data disk (locked | unlocked | absent)',
        params: Ref,
        body: Type.Optional(Type.Object({}, { additionalProperties: false })),
        response: { 200: DiskStatusSchema, ...errors },
      },
    },
    async (req) => svc.diskStatus(req.params.ref),
  );
  app.get('/attest/providers', { schema: { tags: ['attest'], response: { 200: ProvidersSchema } } }, async () => ({
    active: svc.provider.name,
    providers: providers().map((p) => ({
      name: p.name,
      available: p.available(),
      trust: p.trust,
      protects: p.protects,
      doesNotProtect: p.doesNotProtect,
    })),
  }));
  return svc;
}

function readArgv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch (err) {
    throw new FormError('ATTEST_UNAVAILABLE', `Cannot read the QEMU process ${pid}: ${(err as Error).message}`);
  }
}

/** The backing file named in a qcow2 header (absolute), or null. */
/**
 * The file behind a drive path. A QEMU that dropped its privileges gets its disks as open files
 * (`-add-fd fd=3,set=1` … `file=/dev/fdset/1`; QEMU keeps dups of them): the overlay is then the file
 * among its process's open fds (`/proc/<pid>/fd`) that is this VM's root disk, read here on the node
 * that started it.
 */
export function resolveFdset(
  path: string | undefined,
  vmId: string,
  pid: number | null | undefined,
): string | undefined {
  if (!/^\/dev\/fdset\/\d+$/.test(path ?? '')) return path;
  if (!pid) return undefined;
  const want = `/${vmId}/qemu/disk.qcow2`;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (target.endsWith(want)) return target;
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export function qcow2Backing(file: string): string | null {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(20);
    readSync(fd, h, 0, 20, 0);
    if (h.readUInt32BE(0) !== 0x514649fb) return null; // "QFI\xfb"
    const off = Number(h.readBigUInt64BE(8));
    const len = h.readUInt32BE(16);
    if (!off || !len || len > 4096) return null;
    const name = Buffer.alloc(len);
    readSync(fd, name, 0, len, off);
    const p = name.toString('utf8');
    return isAbsolute(p) ? p : resolve(dirname(file), p);
  } finally {
    closeSync(fd);
  }
}
