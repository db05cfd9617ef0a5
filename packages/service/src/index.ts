export * from './client.ts';
export * from './config.ts';
export * from './logger.ts';
export * from './server.ts';
