/** Longest autostop idle time (minutes: one week); the state's instance ops accept 0..this. */
export const MAX_AUTOSTOP_MINUTES = 10_080;

/** What an autostop idle time may be written as (the Formfile's `AUTOSTOP` and `form manage autostop`). */
export const AUTOSTOP_EXPECTED = `whole minutes from 1 to ${MAX_AUTOSTOP_MINUTES} such as 15, 15m, 2h, 1h30m or 1d, or off`;

/**
 * An autostop idle time (scale to zero): `off` (0), whole minutes (`15`), or a duration of whole
 * minutes (`15m`, `2h`, `1h30m`, `1d`), 1 minute to 7 days. The node measures idleness per minute, so
 * seconds are refused. Returns the minutes, or why not (`range`: well-formed but outside 1..10080).
 *
 * @example parseAutostop('1h30m') // 90
 * @example parseAutostop('off') // 0
 * @example parseAutostop('30s') // { why: '...', range: false }
 */
export function parseAutostop(text: string): number | { why: string; range: boolean } {
  const t = text.trim().toLowerCase();
  if (t === 'off') return 0;
  if (/^[0-9dhms.]+$/.test(t) && /[0-9](s|ms)$/.test(t)) {
    return { why: 'autostop counts whole minutes (idleness is measured per minute): write 1m or more', range: false };
  }
  const m = /^(?:(\d{1,5})|(?:(\d{1,3})d)?(?:(\d{1,5})h)?(?:(\d{1,6})m)?)$/.exec(t);
  if (!t || !m) return { why: `expected ${AUTOSTOP_EXPECTED}`, range: false };
  const n = m[1] !== undefined ? Number(m[1]) : Number(m[2] ?? 0) * 1440 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0);
  if (n < 1 || n > MAX_AUTOSTOP_MINUTES) {
    return { why: `${n} min is outside 1 minute to 7 days (${MAX_AUTOSTOP_MINUTES} min); or write off`, range: true };
  }
  return n;
}
