export * from './limits.ts';
export * from './memory-op-store.ts';
export * from './node.ts';
export * from './op-store.ts';
export * from './peer-identity.ts';
export { SYNC_PROTOCOL } from './sync-protocol.ts';
