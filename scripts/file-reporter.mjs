// node:test reporter for scripts/run-tests.mjs, one JSON line per fact about the file it runs:
// `{ skip: { file, name, type, reason } }` per skipped test or suite, and `{ counts }` (tests, passed,
// failed, cancelled, skipped, todo, suites) once at the end.
export default async function* fileReporter(source) {
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.skip !== undefined) {
      const { file, name, skip, details } = event.data;
      const reason = typeof skip === 'string' ? skip : '';
      yield `${JSON.stringify({ skip: { file, name, type: details?.type ?? 'test', reason } })}\n`;
    } else if (event.type === 'test:summary' && event.data.file === undefined) {
      yield `${JSON.stringify({ counts: event.data.counts })}\n`;
    }
  }
}
