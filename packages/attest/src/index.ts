export * from './client.ts';
export * from './disk.ts';
export * from './measurement.ts';
export * from './providers.ts';
export * from './report.ts';
export * from './seal.ts';
export * from './service.ts';
export * from './testing.ts';
