// node:test reporter for scripts/run-tests.mjs: one JSON line per skipped test or suite ({ file, name, type, reason }).
export default async function* skipReporter(source) {
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.skip !== undefined) {
      const { file, name, skip, details } = event.data;
      const reason = typeof skip === 'string' ? skip : '';
      yield `${JSON.stringify({ file, name, type: details?.type ?? 'test', reason })}\n`;
    }
  }
}
