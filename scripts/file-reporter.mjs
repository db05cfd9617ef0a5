// node:test reporter for scripts/run-tests.mjs, one JSON line per fact about the file it runs:
// `{ skip: { file, name, type, reason } }` per skipped test or suite; `{ timing: { loadMs, tailMs } }`
// (from the start to when the first test began, i.e. process start, imports and before-hooks; from the last test to the end,
// i.e. after-hooks and handles that keep the process alive); `{ counts }` (tests, passed, failed,
// cancelled, skipped, todo, suites) once at the end.
export default async function* fileReporter(source) {
  const t0 = performance.now();
  let firstStart;
  let lastEnd;
  for await (const event of source) {
    // When the first test began running, not its `test:start`: node emits that when it reports the
    // test, i.e. after the first test of a suite has ended (a 60 s first test read as 60 s of loading).
    // A leaf test's `test:complete` comes when it ends, with its duration; the process's own wrapper
    // (no entryFile) and suites (their hooks are "before the first test") are left out.
    if (event.type === 'test:complete' && event.data.details?.type === 'test' && event.data.entryFile !== undefined) {
      const began = performance.now() - (event.data.details.duration_ms ?? 0);
      if (firstStart === undefined || began < firstStart) firstStart = began;
    }
    if (event.type === 'test:pass' || event.type === 'test:fail') {
      lastEnd = performance.now();
      if (event.data.skip !== undefined) {
        const { file, name, skip, details } = event.data;
        const reason = typeof skip === 'string' ? skip : '';
        yield `${JSON.stringify({ skip: { file, name, type: details?.type ?? 'test', reason } })}\n`;
      }
    } else if (event.type === 'test:summary' && event.data.file !== undefined && lastEnd !== undefined) {
      const loadMs = firstStart === undefined ? null : Math.round(firstStart - t0);
      yield `${JSON.stringify({ timing: { loadMs, tailMs: Math.round(performance.now() - lastEnd) } })}\n`;
    } else if (event.type === 'test:summary' && event.data.file === undefined) {
      yield `${JSON.stringify({ counts: event.data.counts })}\n`;
    }
  }
}
