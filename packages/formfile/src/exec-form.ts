/** Result of reading a JSON exec form such as `["python3", "/app/hello.py"]`. */
export type ExecFormResult = { ok: true; argv: string[] } | { ok: false; message: string; offset: number };

/**
 * Parse a JSON array of strings starting at `from` (which holds `[`) and running to the end of `text`,
 * reporting the offset of the first thing that is wrong.
 */
export function parseExecForm(text: string, from: number): ExecFormResult {
  let i = from + 1;
  const argv: string[] = [];
  const skip = () => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (message: string, offset = i): ExecFormResult => ({ ok: false, message, offset });
  skip();
  if (text[i] === ']') {
    i++;
    skip();
    if (i < text.length) return fail('unexpected text after the closing "]"');
    return fail('the exec form must name a program: the JSON array is empty', from);
  }
  for (;;) {
    skip();
    if (i >= text.length) return fail('the JSON array is not closed: expected "]"');
    if (text[i] !== '"') {
      const what = text[i] === "'" ? 'single quotes are not JSON: use double quotes' : 'expected a "string"';
      return fail(`exec form must be a JSON array of strings: ${what}`);
    }
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) return fail("string is not closed: expected '\"'", start);
    i++;
    let value: string;
    try {
      value = JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail('invalid escape in JSON string', start);
    }
    argv.push(value);
    skip();
    if (text[i] === ',') {
      i++;
      continue;
    }
    if (text[i] === ']') {
      i++;
      skip();
      if (i < text.length) return fail('unexpected text after the closing "]"');
      break;
    }
    if (i >= text.length) return fail('the JSON array is not closed: expected "]"');
    return fail('expected "," or "]" in the JSON array');
  }
  if (argv[0] === '') return fail('the program name (first element) must not be empty', from);
  return { ok: true, argv };
}

/** Quote argv for /bin/sh so a RUN exec form can be stored as one shell command. */
export function shellJoin(argv: string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}
