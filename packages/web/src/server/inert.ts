/**
 * Text from a guest (log lines) made inert before it reaches a page: C0/C1 control characters (ESC and
 * what follows it cannot recolour or rewrite anything once it is U+FFFD) and the Unicode bidi controls
 * (which could make a line read backwards: "Trojan Source") become U+FFFD. Tabs stay. React escapes HTML
 * itself; this keeps what the browser shows equal to what the bytes say.
 *
 * @example inertLine('\u001b[31mred\u202e') // '\ufffd[31mred\ufffd'
 */
export function inertLine(text: string): string {
  let out = '';
  for (const c of text) {
    const n = c.codePointAt(0) ?? 0;
    const control = (n < 0x20 && n !== 0x09) || (n >= 0x7f && n <= 0x9f);
    const bidi = (n >= 0x202a && n <= 0x202e) || (n >= 0x2066 && n <= 0x2069) || n === 0x200e || n === 0x200f;
    out += control || bidi ? '\ufffd' : c;
  }
  return out;
}
