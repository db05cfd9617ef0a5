import type { NonceCache } from '@formation/identity';
import { FormError } from '@formation/interface';
import { verifyDataItem } from './ans104.ts';

/** How far an owner item's Timestamp tag may be from the node's clock. */
export const OWNER_ITEM_WINDOW_MS = 5 * 60_000;

/** An owner's request to checkpoint or restore a process, proven by an ANS-104 data item they signed. */
export interface OwnerItem {
  /** The signer's address as AO names it (an Arweave wallet address, `0x…` for Ethereum keys). */
  address: string;
  action: 'Checkpoint' | 'Restore';
  /** For Restore: the checkpoint to go back to (tag `Checkpoint`, or `{"sha256": …}` as data). */
  sha256?: string;
}

/** Two addresses are the same signer: Ethereum addresses case-insensitively, AO (base64url) ones exactly. */
export function sameAddress(a: string, b: string): boolean {
  if (a.startsWith('0x') && b.startsWith('0x')) return a.toLowerCase() === b.toLowerCase();
  return a === b;
}

/**
 * Check a data item that asks for `action` on process `pid`: any ANS-104 signer (an Arweave wallet
 * included), tags `Action` and `Process` (or the item's target) naming exactly this, a `Timestamp`
 * (ms) within OWNER_ITEM_WINDOW_MS of `now`, and an item id never used before (so a captured request
 * cannot be posted again). Who may act is for the caller to decide from `address`.
 *
 * @example
 * const item = verifyOwnerItem(body, pid, 'Checkpoint', nonces); // then: owner or admin?
 */
export function verifyOwnerItem(
  raw: Buffer,
  pid: string,
  action: OwnerItem['action'],
  nonces: NonceCache,
  now = Date.now(),
): OwnerItem {
  const d = verifyDataItem(raw);
  const tag = (n: string) => d.tags.find((t) => t.name === n)?.value;
  const refuse = (why: string) =>
    new FormError('AUTH_FORBIDDEN', `Cannot ${action.toLowerCase()} process ${pid}: ${why}`, {
      hint: `Sign a data item with tags Action=${action}, Process=${pid}, Timestamp=<now in ms>${action === 'Restore' ? ', Checkpoint=<sha256>' : ''} and post it as application/octet-stream.`,
    });
  if (tag('Action') !== action)
    throw refuse(`the signed item's Action is ${JSON.stringify(tag('Action') ?? null)}, not ${action}`);
  const target = tag('Process') ?? d.target;
  if (target !== pid) throw refuse(`the signed item is for process ${JSON.stringify(target || null)}`);
  const ts = Number(tag('Timestamp'));
  if (!Number.isFinite(ts) || Math.abs(now - ts) > OWNER_ITEM_WINDOW_MS)
    throw refuse(
      `the signed item's Timestamp must be within ${OWNER_ITEM_WINDOW_MS / 60_000} minutes of the node's clock`,
    );
  const verdict = nonces.remember(d.ownerAddress, d.id, ts, OWNER_ITEM_WINDOW_MS, now);
  if (verdict !== 'new') throw refuse(`the signed item was already used or cannot be remembered (${verdict})`);
  const out: OwnerItem = { address: d.ownerAddress, action };
  if (action === 'Restore') {
    let sha = tag('Checkpoint');
    if (!sha && d.data.length > 0) {
      try {
        sha = (JSON.parse(d.data.toString('utf8')) as { sha256?: string }).sha256;
      } catch {
        // no JSON data: the tag is required then
      }
    }
    if (!sha) throw new FormError('BAD_REQUEST', `Cannot restore process ${pid}: the signed item names no Checkpoint`);
    out.sha256 = sha;
  }
  return out;
}
