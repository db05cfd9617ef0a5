export * from './placement.ts';
export * from './status.ts';
