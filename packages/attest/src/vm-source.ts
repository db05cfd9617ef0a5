/**
 * What attestation needs of a node's VMs: to find one by id or name, read the fields a report and a
 * measurement are made of, and run a command through its guest agent. Declared here (not imported
 * from the VMM) so the crypto package depends on no VMM; `@formation/vmm`'s `VmManager` satisfies it,
 * and a test can hand in any object of this shape.
 */
export interface AttestableVm {
  id: string;
  name: string;
  owner: string | null;
  /** The VMM's state name; attestation needs `running`. */
  state: string;
  /** QEMU's PID while it runs (its argv in /proc is what gets measured). */
  pid: number | null;
  /** What the VM was made from (`kind: 'formpack'` with its `id` goes into the report). */
  source: { kind: string; id?: string };
}

export interface GuestExecResult {
  exitcode: number;
  stdout: string;
  stderr: string;
}

export interface AttestVmSource {
  list(): AttestableVm[];
  exec(id: string, path: string, args?: string[], timeoutMs?: number): Promise<GuestExecResult>;
}
