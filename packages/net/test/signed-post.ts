import { type KeyPair, signRequest } from '@formation/identity';

/** The identity the formnet test apps answer to (`setApiIdentity`); signed requests name it. */
export const AUDIENCE = 'test-formnet-node';

/**
 * A POST signed by `key` for `app.inject()`: the JSON body and the signature headers over it, for
 * `AUDIENCE`.
 *
 * @example await app.inject(signedPost(dev, '/join', { wgPublicKey }));
 */
export function signedPost(key: KeyPair, path: string, body: unknown) {
  const payload = JSON.stringify(body);
  return {
    method: 'POST' as const,
    url: path,
    payload,
    headers: {
      'content-type': 'application/json',
      ...signRequest(key, { method: 'POST', path, body: payload, audience: AUDIENCE }),
    } as Record<string, string>,
  };
}
