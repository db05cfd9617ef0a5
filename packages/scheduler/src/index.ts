export * from './health.ts';
export * from './placement.ts';
export * from './status.ts';
