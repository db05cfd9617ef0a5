/**
 * A bounded first-in-first-out set of op hashes. The node marks every op it received from the
 * network here, so the store's `onAccepted` does not publish it again (gossipsub forwards it already,
 * and an op from anti-entropy is old news). Past `max` the oldest mark is dropped: at worst an old op
 * is published once more, which gossipsub's duplicate cache absorbs.
 *
 * @example
 * const recent = new RecentHashes(2); recent.add('a'); recent.add('b'); recent.add('c');
 * recent.has('a') // false
 */
export class RecentHashes {
  private readonly hashes = new Set<string>();
  private readonly max: number;

  constructor(max = 50_000) {
    this.max = max;
  }

  add(hash: string): void {
    this.hashes.add(hash);
    if (this.hashes.size > this.max) {
      const first = this.hashes.values().next().value;
      if (first !== undefined) this.hashes.delete(first);
    }
  }

  has(hash: string): boolean {
    return this.hashes.has(hash);
  }

  get size(): number {
    return this.hashes.size;
  }
}
