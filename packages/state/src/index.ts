export * from './canonical.ts';
export * from './client.ts';
export * from './kinds.ts';
export * from './op.ts';
export * from './pending.ts';
export * from './service.ts';
export * from './store.ts';
export * from './views.ts';
