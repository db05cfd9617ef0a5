import type { KeyPair } from '@formation/identity';
import { FormError, type FormpackManifest } from '@formation/interface';
import type { ShipResultInfo } from '@formation/interface/web-api';
import type { StateClient } from './client.ts';

export interface ShipOptions {
  /** Replica count (1–16); default: 3, or the number of nodes when fewer. */
  replicas?: number | undefined;
  /** Always create a new instance (default: shipping the same thing again is a no-op). */
  new?: boolean | undefined;
  /** A rolling update replaces at most this many replicas at a time (default: the instance's, else 1). */
  maxUnavailable?: number | undefined;
}

/** What the dashboard answers for a ship (`ShipResultInfo`, the contract), and the release it made. */
export interface ShipResult extends ShipResultInfo {
  /** The release a changed Formpack made (a rolling update), when it made one. */
  release?: number;
}

/**
 * Publish a built Formpack (when not yet published) and create or update the instance of its name
 * owned by `key` (its delegation's owner for a dashboard session). Shared by `form pack ship` and the
 * dashboard, so both behave the same: shipping the same Formpack under the same name again returns the
 * existing instance (scaled when `replicas` differs); a changed Formpack with the same name updates
 * that instance to it.
 */
export async function shipFormpack(
  state: StateClient,
  key: KeyPair,
  manifest: FormpackManifest,
  opts: ShipOptions = {},
): Promise<ShipResult> {
  const { replicas } = opts;
  if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 1 || replicas > 16)) {
    throw new FormError('BAD_REQUEST', `Cannot ship with ${replicas} replicas: give a whole number from 1 to 16`);
  }
  const nodes = await state.nodes();
  if (!(await state.formpacks()).some((f) => f.id === manifest.id)) {
    await state.author(key, 'formpack.publish', {
      id: manifest.id,
      name: manifest.name,
      owner: key.address,
      sha256s: Object.fromEntries(Object.entries(manifest.artifacts).map(([k, a]) => [k, a.sha256])),
      size: Object.values(manifest.artifacts).reduce((n, a) => n + a.bytes, 0),
      service: {
        expose: [...new Set(manifest.formfile.expose ?? [])],
        ...(manifest.formfile.healthcheck ? { healthcheck: manifest.formfile.healthcheck } : {}),
        ...(manifest.formfile.https?.terminate === 'ingress'
          ? { ingressTls: { port: manifest.formfile.https.port } }
          : {}),
      },
    });
  }
  // The Formfile's `AUTOSTOP` (scale to zero): set at create and by each release that says it; absent, the
  // instance keeps its setting (`form manage autostop` overrides the Formfile until the next such release).
  const autostop = manifest.formfile.autostopMinutes;
  const mine = (await state.instances()).filter(
    (i) => !i.deleted && i.ownerAddress === key.address && i.name === manifest.name,
  );
  const base = { name: manifest.name, formpackId: manifest.id };
  // The Formfile's `GPU`: one GPU of any vendor (placement then needs a node with a passthrough-capable one).
  const gpu = manifest.formfile.gpu ? { count: 1 } : null;
  const same = mine.find((i) => i.formpackId === manifest.id);
  if (!opts.new && same) {
    // The same Formpack again is a no-op, unless it asks for another replica count: then it scales.
    if (replicas !== undefined && replicas !== same.replicas) {
      await state.author(key, 'instance.update', { instanceId: same.id, replicas });
      return { ...base, id: same.id, replicas, created: false, updated: true };
    }
    return { ...base, id: same.id, replicas: same.replicas, created: false, updated: false };
  }
  const current = mine[0];
  const mu = opts.maxUnavailable;
  if (mu !== undefined && (!Number.isInteger(mu) || mu < 1 || mu > 16)) {
    throw new FormError('BAD_REQUEST', `Cannot update ${mu} replicas at a time: give a whole number from 1 to 16`);
  }
  if (!opts.new && current) {
    // A changed Formpack under the same name: a new release, rolled out a few replicas at a time.
    const release = Math.max(1, ...(current.releases ?? []).map((r) => r.release)) + 1;
    await state.author(key, 'instance.update', {
      instanceId: current.id,
      formpackId: manifest.id,
      resources: manifest.resources,
      release,
      ...(mu ? { maxUnavailable: mu } : {}),
      ...(gpu || current.gpu ? { gpu } : {}),
      ...(replicas ? { replicas } : {}),
      ...(autostop !== undefined ? { autostopMinutes: autostop } : {}),
    });
    return {
      ...base,
      id: current.id,
      replicas: replicas ?? current.replicas,
      created: false,
      updated: true,
      release,
    };
  }
  const want = replicas ?? Math.max(1, Math.min(3, nodes.length));
  const op = await state.author(key, 'instance.create', {
    name: manifest.name,
    formpackId: manifest.id,
    replicas: want,
    resources: manifest.resources,
    ...(gpu ? { gpu } : {}),
  });
  // Right after its create, before any node has booted it (a suspend needs a running, idle replica).
  if (autostop) await state.author(key, 'instance.update', { instanceId: op.body.id, autostopMinutes: autostop });
  return { ...base, id: op.body.id as string, replicas: want, created: true, updated: false };
}
