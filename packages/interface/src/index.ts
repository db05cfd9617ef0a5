export * from './errors.ts';
export * from './formfile.ts';
export * from './formpack.ts';
export * from './home.ts';
export * from './integration.ts';
export * from './ports.ts';
export * from './replica.ts';
export * from './types.ts';
