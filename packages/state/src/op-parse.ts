import { sha256Hex } from '@formation/identity';
import { checkBody } from './kinds.ts';
import { encodeOp, MAX_DEPS, MAX_OP_BYTES, OP_KINDS, type Op, verifyOpSignature } from './op.ts';

// Parsing an op off the wire: structure, canonical encoding, hash and signature (everything that
// needs no other op). The store checks the rest (deps, authority) against what it holds.

export type RejectCode = 'AUTH_BAD_SIGNATURE' | 'STATE_OP_INVALID' | 'STATE_OP_FORBIDDEN';

export interface Rejected {
  /** The op's hash when it could be computed, else ''. */
  hash: string;
  code: RejectCode;
  reason: string;
}

const ENVELOPE_KEYS = new Set(['v', 'author', 'deps', 'kind', 'body', 'ts', 'sig', 'hash']);
/** A sha256 hash as ops carry it (64 lowercase hex). */
export const HEX64 = /^[0-9a-f]{64}$/;

export const badSignature = (hash: string): Rejected => ({
  hash,
  code: 'AUTH_BAD_SIGNATURE',
  reason: 'signature does not verify for the author',
});

/** Structural checks, hash and signature: everything that does not need other ops. */
export function parseOp(input: unknown): { op: Op; size: number } | Rejected {
  const p = parseUnverified(input);
  if ('code' in p) return p;
  return verifyOpSignature(p.op.author, p.bytes, p.op.sig) ? { op: p.op, size: p.size } : badSignature(p.op.hash);
}

/** `parseOp` without the signature check (the caller verifies `bytes`, possibly on other threads). */
export function parseUnverified(input: unknown): { op: Op; size: number; bytes: string } | Rejected {
  const bad = (reason: string, hash = ''): Rejected => ({ hash, code: 'STATE_OP_INVALID', reason });
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return bad('op must be a JSON object');
  const o = input as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!ENVELOPE_KEYS.has(k)) return bad(`unknown field ${k}`);
  if (o.v !== 1) return bad('v must be 1');
  if (typeof o.author !== 'string' || !/^0[23][0-9a-f]{64}$/.test(o.author)) {
    return bad('author must be a compressed secp256k1 public key (66 lowercase hex)');
  }
  if (!Array.isArray(o.deps) || o.deps.length > MAX_DEPS) return bad(`deps must be an array of at most ${MAX_DEPS}`);
  for (let i = 0; i < o.deps.length; i++) {
    const d = o.deps[i];
    if (typeof d !== 'string' || !HEX64.test(d)) return bad('deps must be sha256 hashes (64 lowercase hex)');
    if (i > 0 && !(d > (o.deps[i - 1] as string))) return bad('deps must be sorted and unique');
  }
  if (typeof o.kind !== 'string' || !(OP_KINDS as readonly string[]).includes(o.kind)) {
    return bad(`unknown kind ${JSON.stringify(o.kind)}`);
  }
  if (typeof o.body !== 'object' || o.body === null || Array.isArray(o.body)) return bad('body must be an object');
  if (typeof o.ts !== 'number' || !Number.isSafeInteger(o.ts) || o.ts < 0)
    return bad('ts must be a non-negative integer');
  if (typeof o.sig !== 'string') return bad('sig must be a string');
  if (o.hash !== undefined && (typeof o.hash !== 'string' || !HEX64.test(o.hash)))
    return bad('hash must be 64 lowercase hex');
  const op = o as unknown as Op;
  let bytes: string;
  try {
    bytes = encodeOp(op);
  } catch (err) {
    return bad(`body cannot be encoded canonically: ${(err as Error).message}`);
  }
  const size = Buffer.byteLength(bytes);
  if (size > MAX_OP_BYTES) return bad(`op is ${size} bytes, more than the limit of ${MAX_OP_BYTES}`);
  const hash = sha256Hex(bytes);
  if (o.hash !== undefined && o.hash !== hash) return bad(`hash mismatch: op hashes to ${hash}`, hash);
  if (op.deps.includes(hash)) return bad('op depends on itself', hash);
  const bodyErr = checkBody(op.kind, op.body);
  if (bodyErr) return bad(`${op.kind} body: ${bodyErr}`, hash);
  const clean: Op = {
    v: 1,
    author: op.author,
    deps: op.deps,
    kind: op.kind,
    body: op.body,
    ts: op.ts,
    sig: op.sig,
    hash,
  };
  return { op: clean, size, bytes };
}
