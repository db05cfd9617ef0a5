export * from './config.ts';
export * from './daemon-files.ts';
export * from './doctor.ts';
