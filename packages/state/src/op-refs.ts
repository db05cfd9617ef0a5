import type { DelegatedKey, KeyPair } from '@formation/identity';
import { FormError } from '@formation/interface';
import { DELEGABLE_KINDS } from './kinds.ts';
import type { OpKind } from './op.ts';
import type { ViewState } from './views.ts';

// What a new op carries besides its body: the delegation of the key that signs it, and the ops it
// must cite as deps (looked up in the views). Used by `store.author()` and the clients.

/**
 * `body` for an op by `key`: a delegated key (a dashboard session) adds its delegation as
 * `onBehalfOf` on the kinds a delegate may make; other kinds are refused before anything is signed.
 */
export function withDelegation(key: KeyPair, kind: OpKind, body: Record<string, unknown>): Record<string, unknown> {
  const d = (key as Partial<DelegatedKey>).delegation;
  if (!d) return { ...body };
  if (!DELEGABLE_KINDS.has(kind)) {
    throw new FormError('AUTH_FORBIDDEN', `Cannot make a ${kind} op with a delegated key`, {
      hint: 'Dashboard sessions may only manage Formpacks and instances.',
    });
  }
  return { ...body, onBehalfOf: d };
}

/** The ops a new op of `kind` by `author` must cite in deps, looked up in the current views. */
export function refsFor(v: ViewState, author: string, kind: OpKind, body: Record<string, unknown>): string[] {
  const id = body.instanceId as string | undefined;
  switch (kind) {
    case 'instance.update':
    case 'instance.delete':
    case 'instance.claim':
    case 'instance.commit':
    case 'dns.record':
    case 'dns.claim':
    case 'port.claim': {
      const c = id ? v.instanceCreate(id) : undefined;
      return c ? [c.hash] : [];
    }
    case 'instance.health': {
      const c = id ? v.claimOf(id, author) : undefined;
      return c ? [c] : [];
    }
    case 'port.granted': {
      const r = v.registrationOf(author);
      return [...(r ? [r] : []), body.claim as string];
    }
    case 'dns.verified':
    case 'dns.lapsed': {
      const r = v.registrationOf(author);
      return [...(r ? [r] : []), body.claim as string];
    }
    case 'formnet.allocate': {
      const r = v.registrationOf(author);
      return r ? [r] : [];
    }
    case 'node.admit':
    case 'node.remove':
      return v.genesis ? [v.genesis] : [];
    default:
      return [];
  }
}
