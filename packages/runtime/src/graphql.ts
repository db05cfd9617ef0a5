import { FormError } from '@formation/interface';

/** What the node knows about one id (a process, a module, this scheduler) as a gateway shows it. */
export interface KnownTransaction {
  id: string;
  owner: string;
  tags: Array<{ name: string; value: string }>;
  recipient?: string;
  /** Milliseconds since the epoch (shown as the block timestamp, in seconds). */
  timestamp?: number;
}

/** The arguments of `transactions(…)` that are honoured; others (sort, block, …) are accepted and ignored. */
export interface TransactionsQuery {
  ids?: string[];
  owners?: string[];
  recipients?: string[];
  tags?: Array<{ name: string; values: string[] }>;
  first?: number;
  after?: string;
}

type Value = string | number | boolean | null | Value[] | { [k: string]: Value };

const bad = (why: string) =>
  new FormError('BAD_REQUEST', `Cannot answer GraphQL query: ${why}`, {
    hint: 'This node answers the gateway query AO clients make: transactions(ids | owners | tags | recipients, first, after).',
  });

/** Parse the argument list of the first `transactions(` in a query (a small GraphQL subset). */
export function parseTransactionsQuery(query: string, variables: Record<string, unknown> = {}): TransactionsQuery {
  if (typeof query !== 'string' || query.length > 20_000)
    throw bad('the query must be a string of at most 20,000 characters');
  const at = /\btransactions\s*\(/.exec(query);
  if (!at) {
    if (/\btransactions\b/.test(query)) return {};
    throw bad('only the `transactions` field is served here');
  }
  let i = at.index + at[0].length;
  const ws = () => {
    while (i < query.length && /[\s,]/.test(query[i] as string)) i++;
  };
  const name = (): string => {
    const m = /^[_A-Za-z][_0-9A-Za-z]*/.exec(query.slice(i));
    if (!m) throw bad(`expected a name at character ${i}`);
    i += m[0].length;
    return m[0];
  };
  /** `name: value` pairs up to `close` (an object's `}` or the argument list's `)`), which is passed. */
  const fields = (close: string, depth: number, unclosed: string): Record<string, Value> => {
    const out: Record<string, Value> = {};
    for (ws(); query[i] !== close; ws()) {
      if (i >= query.length) throw bad(unclosed);
      const k = name();
      ws();
      if (query[i] !== ':') throw bad(`expected ':' after ${k}`);
      i++;
      out[k] = value(depth);
    }
    i++;
    return out;
  };
  const value = (depth: number): Value => {
    if (depth > 8) throw bad('arguments nest too deep');
    ws();
    const c = query[i];
    if (c === '$') {
      i++;
      const v = variables[name()];
      return (v === undefined ? null : v) as Value;
    }
    if (c === '"') {
      let j = i + 1;
      let s = '';
      while (j < query.length && query[j] !== '"') {
        if (query[j] === '\\') j++;
        s += query[j] ?? '';
        j++;
      }
      if (j >= query.length) throw bad('a string is not closed');
      i = j + 1;
      return s;
    }
    if (c === '[') {
      i++;
      const out: Value[] = [];
      for (ws(); query[i] !== ']'; ws()) {
        if (i >= query.length) throw bad('a list is not closed');
        out.push(value(depth + 1));
      }
      i++;
      return out;
    }
    if (c === '{') {
      i++;
      return fields('}', depth + 1, 'an object is not closed');
    }
    const num = /^-?\d+(\.\d+)?/.exec(query.slice(i));
    if (num) {
      i += num[0].length;
      return Number(num[0]);
    }
    const word = name();
    return word === 'true' ? true : word === 'false' ? false : word === 'null' ? null : word;
  };
  const args = fields(')', 0, 'the argument list of transactions is not closed');
  const strings = (k: string): string[] | undefined => {
    const v = args[k];
    if (v === undefined || v === null) return undefined;
    const list = Array.isArray(v) ? v : [v];
    if (!list.every((x) => typeof x === 'string')) throw bad(`${k} must be a list of strings`);
    return list as string[];
  };
  const q: TransactionsQuery = {};
  const ids = strings('ids');
  if (ids) q.ids = ids;
  const owners = strings('owners');
  if (owners) q.owners = owners;
  const recipients = strings('recipients');
  if (recipients) q.recipients = recipients;
  if (args.tags !== undefined && args.tags !== null) {
    if (!Array.isArray(args.tags)) throw bad('tags must be a list of {name, values}');
    q.tags = args.tags.map((t) => {
      const o = t as Record<string, Value>;
      const values = o?.values;
      if (typeof o?.name !== 'string' || !Array.isArray(values) || !values.every((x) => typeof x === 'string'))
        throw bad('every tag filter needs a name and a list of values');
      return { name: o.name, values: values as string[] };
    });
  }
  if (typeof args.first === 'number') q.first = Math.max(0, Math.min(100, Math.floor(args.first)));
  if (typeof args.after === 'string') q.after = args.after;
  return q;
}

/**
 * Answer a gateway GraphQL query from what this node knows, in the gateway's response shape.
 *
 * @example
 * answerTransactions({ owners: [addr], tags: [{ name: 'Name', values: ['me'] }] }, known)
 * // → { data: { transactions: { pageInfo: { hasNextPage: false }, edges: [{ cursor, node: { id, tags, … } }] } } }
 */
export function answerTransactions(q: TransactionsQuery, known: KnownTransaction[]): Record<string, unknown> {
  let list = known.filter(
    (t) =>
      (!q.ids || q.ids.includes(t.id)) &&
      (!q.owners || q.owners.includes(t.owner)) &&
      (!q.recipients || (t.recipient !== undefined && q.recipients.includes(t.recipient))) &&
      (!q.tags || q.tags.every((f) => t.tags.some((x) => x.name === f.name && f.values.includes(x.value)))),
  );
  if (q.after) {
    const at = list.findIndex((t) => t.id === q.after);
    list = at >= 0 ? list.slice(at + 1) : [];
  }
  const first = q.first ?? 100;
  const page = list.slice(0, first);
  return {
    data: {
      transactions: {
        pageInfo: { hasNextPage: list.length > page.length },
        edges: page.map((t) => ({
          cursor: t.id,
          node: {
            id: t.id,
            anchor: '',
            signature: '',
            recipient: t.recipient ?? '',
            owner: { address: t.owner, key: '' },
            fee: { winston: '0', ar: '0' },
            quantity: { winston: '0', ar: '0' },
            data: { size: '0', type: t.tags.find((x) => x.name === 'Content-Type')?.value ?? '' },
            tags: t.tags,
            block: { id: '', height: 0, timestamp: Math.floor((t.timestamp ?? 0) / 1000), previous: '' },
            parent: null,
            bundledIn: null,
          },
        })),
      },
    },
  };
}
