export * from './delegation.ts';
export * from './keys.ts';
export * from './keystore.ts';
export * from './signed-request.ts';
export * from './tls-binding.ts';
