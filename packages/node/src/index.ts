export * from './config.ts';
export * from './controller.ts';
export * from './daemon.ts';
export * from './daemon-files.ts';
export * from './deploy-status.ts';
export * from './doctor.ts';
