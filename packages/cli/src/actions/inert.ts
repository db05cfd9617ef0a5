/**
 * Text from a guest or another party (log lines, node names, failure reasons) made inert for a terminal:
 * C0/C1 control characters (ESC, BEL, CR, the 8-bit CSI …) become U+FFFD, so the text cannot set the
 * title, move the cursor, recolour or rewrite what was printed, or write the clipboard (OSC 52). Tabs stay.
 */
export function inert(text: string): string {
  let out = '';
  for (const c of text) {
    const n = c.codePointAt(0) ?? 0;
    out += (n < 0x20 && n !== 0x09) || (n >= 0x7f && n <= 0x9f) ? '\ufffd' : c;
  }
  return out;
}
