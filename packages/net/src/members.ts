import { FormError } from '@formation/interface';
import { allocateMemberAddress, allocateNodeSlice } from './ipam.ts';
import type { WgPeer } from './wireguard.ts';

/** A formnet member: a node or a developer peer, as recorded in state. */
export interface FormnetMember {
  /** The member's account address (`0x…`), the signer of its join request. */
  id: string;
  kind: 'node' | 'developer';
  /** base64 WireGuard public key. */
  wgPublicKey: string;
  /** Its formnet address (bare IPv4, inside 10.128.0.0/16). */
  address: string;
  /** `host:port` where its WireGuard listens, when reachable. */
  endpoint?: string | undefined;
  /** Nodes: the /24 of formnet their instances live in. */
  slice?: string | undefined;
}

export interface MemberRequest {
  /** The member's account address (`0x…`). */
  id: string;
  /** Its secp256k1 public key (hex), the signer of the join request. */
  publicKey?: string | undefined;
  kind: 'node' | 'developer';
  wgPublicKey: string;
  endpoint?: string | undefined;
  /**
   * A `formnet.peer` state op signed by the member itself, for adapters that record membership as
   * state ops (only the peer may author its own `formnet.peer`). See `formnetPeerOp`.
   */
  peerOp?: unknown;
}

/**
 * Where formnet membership lives. The node daemon backs it with the state store (members become
 * signed ops, the view is rebuilt from them); `MemoryFormnetState` is the in-process implementation.
 */
export interface FormnetStateAdapter {
  listMembers(): Promise<FormnetMember[]>;
  /** Add or update a member. Keeps its address (and slice) if it has one; never hands one out twice. */
  upsertMember(req: MemberRequest): Promise<FormnetMember>;
  /** Remove a member; `leaveOp` is the member's own signed `formnet.leave` (state-backed adapters need it). */
  removeMember(id: string, leaveOp?: unknown): Promise<boolean>;
}

export const DEFAULT_KEEPALIVE = 25;

/** The WireGuard peer entry for a member: its /32 plus, for nodes, its instance slice. */
export function memberToPeer(m: FormnetMember, keepalive = DEFAULT_KEEPALIVE): WgPeer {
  return {
    publicKey: m.wgPublicKey,
    endpoint: m.endpoint,
    allowedIps: [`${m.address}/32`, ...(m.slice ? [m.slice] : [])],
    persistentKeepalive: keepalive,
  };
}

/** The peers `selfId`'s interface should have: every other member. Pure. */
export function desiredPeers(selfId: string, members: readonly FormnetMember[]): WgPeer[] {
  const self = members.find((m) => m.id === selfId);
  return members
    .filter((m) => m.id !== selfId && m.wgPublicKey !== self?.wgPublicKey)
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((m) => memberToPeer(m));
}

/** In-process membership with deterministic allocation; the reference `FormnetStateAdapter`. */
export class MemoryFormnetState implements FormnetStateAdapter {
  private readonly members = new Map<string, FormnetMember>();

  constructor(initial: readonly FormnetMember[] = []) {
    for (const m of initial) this.members.set(m.id, m);
  }

  async listMembers(): Promise<FormnetMember[]> {
    return [...this.members.values()];
  }

  async upsertMember(req: MemberRequest): Promise<FormnetMember> {
    const clash = [...this.members.values()].find((m) => m.wgPublicKey === req.wgPublicKey && m.id !== req.id);
    if (clash) {
      throw new FormError('CONFLICT', 'Cannot join formnet: that WireGuard public key belongs to another member', {
        hint: 'Generate a new WireGuard key for this device.',
      });
    }
    const old = this.members.get(req.id);
    const others = [...this.members.values()].filter((m) => m.id !== req.id);
    const m: FormnetMember = {
      id: req.id,
      kind: req.kind,
      wgPublicKey: req.wgPublicKey,
      address:
        old?.address ??
        allocateMemberAddress(
          req.id,
          others.map((o) => o.address),
        ),
      endpoint: req.endpoint,
      slice:
        req.kind === 'node'
          ? (old?.slice ?? allocateNodeSlice(others.flatMap((o) => (o.slice ? [o.slice] : []))))
          : undefined,
    };
    this.members.set(req.id, m);
    return m;
  }

  async removeMember(id: string): Promise<boolean> {
    return this.members.delete(id);
  }
}
