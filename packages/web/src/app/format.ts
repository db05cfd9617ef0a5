/** `s` cut to `n` characters and an ellipsis when it is much longer (addresses, ids). */
export function short(s: string, n = 10): string {
  return s.length > n + 4 ? `${s.slice(0, n)}…` : s;
}

/** A byte count in B, KiB, MiB or GiB. */
export function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}
