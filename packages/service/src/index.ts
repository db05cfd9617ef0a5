export * from './client.ts';
export * from './config.ts';
export * from './logger.ts';
export * from './server.ts';
export * from './tls-identity.ts';
export * from './tls-listener.ts';
export * from './transport.ts';
