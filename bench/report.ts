/** Print one benchmark metric as a JSON line: `{ "bench": "<suite>.<metric>", "value": N, "unit": "..." }`. */
export function report(bench: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ bench, value: Math.round(value * 1000) / 1000, unit, ...extra })}\n`);
}

/** Run `fn` and return elapsed milliseconds (high resolution). */
export async function timeMs(fn: () => unknown | Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}
