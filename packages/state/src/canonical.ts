/**
 * Canonical JSON: the one byte string every replica derives from a value, so that every replica
 * computes the same op hash and the same state digest.
 *
 * Rules: no whitespace; object keys sorted by UTF-16 code unit (JavaScript's default sort; keys are
 * ASCII in practice); strings escaped exactly as `JSON.stringify` does; numbers must be safe integers
 * (no floats, NaN or -0, which other languages print differently); `undefined`, functions and
 * non-plain objects are refused. Arrays keep their order.
 *
 * @example canonicalJson({ b: 1, a: [true, 'x'] }) // '{"a":[true,"x"],"b":1}'
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isSafeInteger(value) || Object.is(value, -0)) {
        throw new TypeError(`Cannot encode ${value}: only safe integers are allowed`);
      }
      return String(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) throw new TypeError('Cannot encode a non-plain object');
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort();
      const parts: string[] = [];
      for (const k of keys) {
        if (obj[k] === undefined) throw new TypeError(`Cannot encode key ${k}: undefined`);
        parts.push(`${JSON.stringify(k)}:${canonicalJson(obj[k])}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      throw new TypeError(`Cannot encode a value of type ${typeof value}`);
  }
}
