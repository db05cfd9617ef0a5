import { addressOf, type KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { createOp, type Op, type StateStore } from '@formation/state';
import { allocateMemberAddress, MEMBER_POOL } from './ipam.ts';
import type { FormnetMember, FormnetStateAdapter, MemberRequest } from './members.ts';

/**
 * The `formnet.peer` op a member signs about itself (only the peer may author it). The join request
 * carries it so a node can record the member in state. Its `allowedIps` stay empty: what a member
 * routes comes from its allocation (and a node's registered range), never from its own claim.
 */
export function formnetPeerOp(key: KeyPair, wgPublicKey: string, endpoint?: string): Op {
  return createOp(key, 'formnet.peer', { wgPublicKey, ...(endpoint ? { endpoint } : {}), allowedIps: [] }, []);
}

type StoreLike = Pick<StateStore, 'views' | 'applyBatch' | 'author'>;

/**
 * Formnet membership as state ops: members are `formnet.peer` records (authored by each member) with a
 * `formnet.allocate` address (authored by this node, first allocation wins); a node member's instance
 * slice is its registered `formnetRange`. The node must have its own `node.register` in the store to
 * allocate for others.
 */
export class StateFormnetAdapter implements FormnetStateAdapter {
  private readonly store: StoreLike;
  private readonly nodeKey: KeyPair;

  constructor(opts: { store: StoreLike; nodeKey: KeyPair }) {
    this.store = opts.store;
    this.nodeKey = opts.nodeKey;
  }

  async listMembers(): Promise<FormnetMember[]> {
    const v = this.store.views();
    const addressOfPeer = new Map<string, string>();
    for (const a of v.allocations) {
      if (a.kind === 'instance' || addressOfPeer.has(a.peer)) continue;
      addressOfPeer.set(a.peer, a.address); // allocations are sorted by address: lowest wins
    }
    const nodes = new Map(v.nodes.map((n) => [n.id, n]));
    const peers = new Map(v.formnetPeers.map((p) => [p.publicKey, p]));
    const members: FormnetMember[] = [];
    for (const pk of new Set([...peers.keys(), ...nodes.keys()])) {
      const address = addressOfPeer.get(pk);
      const p = peers.get(pk);
      const n = nodes.get(pk);
      const wgPublicKey = p?.wgPublicKey || n?.wgPublicKey;
      if (!address || !wgPublicKey) continue;
      members.push({
        id: addressOf(pk),
        kind: n ? 'node' : 'developer',
        wgPublicKey,
        address,
        endpoint: p?.endpoint ?? undefined,
        slice: n?.formnetRange || undefined,
      });
    }
    return members.sort((a, b) => a.id.localeCompare(b.id));
  }

  async upsertMember(req: MemberRequest): Promise<FormnetMember> {
    const pk = req.publicKey;
    if (!pk || addressOf(pk) !== req.id) {
      throw new FormError('BAD_REQUEST', 'Cannot record formnet member: its public key does not match its address');
    }
    if (pk === this.nodeKey.publicKey && req.peerOp === undefined) {
      this.store.author(this.nodeKey, 'formnet.peer', {
        wgPublicKey: req.wgPublicKey,
        ...(req.endpoint ? { endpoint: req.endpoint } : {}),
        allowedIps: [],
      });
    } else {
      const op = req.peerOp as Partial<Op> | undefined;
      if (!op || typeof op !== 'object') {
        throw new FormError('BAD_REQUEST', 'Cannot join formnet: the request carries no signed formnet.peer op', {
          hint: 'Use requestJoin() from @formation/net, which adds it.',
        });
      }
      const body = (op.body ?? {}) as Record<string, unknown>;
      if (op.kind !== 'formnet.peer' || op.author !== pk || body.wgPublicKey !== req.wgPublicKey) {
        throw new FormError(
          'BAD_REQUEST',
          'Cannot join formnet: peerOp must be a formnet.peer op by the signer with the same wgPublicKey',
        );
      }
      const r = this.store.applyBatch([op]);
      const rej = r.rejected[0];
      if (rej) throw new FormError(rej.code, `Cannot join formnet: peerOp refused: ${rej.reason}`);
    }
    for (let attempt = 0; attempt < 8; attempt++) {
      const mine = (await this.listMembers()).find((m) => m.id === req.id);
      if (mine) return mine;
      const taken = this.store.views().allocations.map((a) => a.address);
      const address = allocateMemberAddress(`${req.id}/${attempt}`, taken, MEMBER_POOL);
      this.store.author(this.nodeKey, 'formnet.allocate', { address, peer: pk, kind: req.kind });
    }
    throw new FormError('CONFLICT', `Cannot allocate a formnet address for ${req.id}: lost every race`);
  }

  async removeMember(id: string, leaveOp?: unknown): Promise<boolean> {
    const op = leaveOp as Partial<Op> | undefined;
    if (
      !op ||
      typeof op !== 'object' ||
      op.kind !== 'formnet.leave' ||
      typeof op.author !== 'string' ||
      addressOf(op.author) !== id
    ) {
      throw new FormError(
        'BAD_REQUEST',
        'Cannot leave formnet: the request carries no formnet.leave op signed by the member',
        {
          hint: 'Use requestLeave() from @formation/net, which adds it.',
        },
      );
    }
    const r = this.store.applyBatch([op as Op]);
    const rej = r.rejected[0];
    if (rej) throw new FormError(rej.code, `Cannot leave formnet: leaveOp refused: ${rej.reason}`);
    return true;
  }
}
