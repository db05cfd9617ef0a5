import type { SourcePosition } from './diagnostic.ts';

/** Where a piece of a logical line came from: text from `offset` on starts at `line`:`column`. */
interface Segment {
  offset: number;
  line: number;
  column: number;
}

/**
 * One instruction after joining `\` continuations and dropping comments and blank lines.
 * Offsets into `text` map back to physical positions with `positionAt`.
 */
export interface LogicalLine {
  text: string;
  /** Physical line where the instruction starts. */
  line: number;
  segments: Segment[];
}

/** A whitespace-separated word; quotes are removed from `value` but kept in the source range. */
export interface Token {
  value: string;
  /** Offset of the first character (in the logical line). */
  start: number;
  end: number;
}

/** Map an offset in a logical line to a 1-based physical line and column. */
export function positionAt(l: LogicalLine, offset: number): SourcePosition {
  let seg = l.segments[0]!;
  for (const s of l.segments) {
    if (s.offset > offset) break;
    seg = s;
  }
  return { line: seg.line, column: seg.column + (offset - seg.offset) };
}

const CONTINUATION = /\\[ \t]*$/;

/**
 * Split source text into logical lines, Dockerfile style: `#` comment lines and blank lines are skipped
 * (also inside a continuation), a line ending in `\` continues on the next one. A leading BOM and CR
 * before LF are ignored.
 */
export function logicalLines(source: string): LogicalLine[] {
  const text = source.charCodeAt(0) === 0xfeff ? source.slice(1) : source;
  const out: LogicalLine[] = [];
  let current: LogicalLine | undefined;
  let lineNo = 0;
  let pos = 0;
  while (pos <= text.length) {
    let nl = text.indexOf('\n', pos);
    if (nl === -1) nl = text.length;
    let raw = text.slice(pos, nl);
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    lineNo++;
    const atEnd = nl >= text.length;
    pos = nl + 1;
    const trimmed = raw.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) {
      if (atEnd) break;
      continue;
    }
    const m = CONTINUATION.exec(raw);
    const piece = m ? raw.slice(0, m.index) : raw;
    if (!current) current = { text: '', line: lineNo, segments: [] };
    current.segments.push({ offset: current.text.length, line: lineNo, column: 1 });
    current.text += piece;
    if (!m) {
      out.push(current);
      current = undefined;
    }
    if (atEnd) break;
  }
  if (current) out.push(current);
  return out;
}

/** An unclosed quote: where it opened. */
export interface QuoteError {
  offset: number;
  quote: string;
}

/**
 * Split `text` from `from` into whitespace-separated tokens. Double quotes group words (with `\"` and `\\`
 * escapes), single quotes group words literally; quotes may appear mid-token (`key:"a b"`).
 */
export function tokenize(text: string, from: number): { tokens: Token[]; error?: QuoteError } {
  const tokens: Token[] = [];
  let i = from;
  const n = text.length;
  while (i < n) {
    while (i < n && (text[i] === ' ' || text[i] === '\t')) i++;
    if (i >= n) break;
    const start = i;
    let value = '';
    while (i < n && text[i] !== ' ' && text[i] !== '\t') {
      const c = text[i]!;
      if (c === '"' || c === "'") {
        const open = i;
        i++;
        let closed = false;
        while (i < n) {
          const d = text[i]!;
          if (d === c) {
            closed = true;
            i++;
            break;
          }
          if (c === '"' && d === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) {
            value += text[i + 1];
            i += 2;
            continue;
          }
          value += d;
          i++;
        }
        if (!closed) return { tokens, error: { offset: open, quote: c } };
      } else {
        value += c;
        i++;
      }
    }
    tokens.push({ value, start, end: i });
  }
  return { tokens };
}
