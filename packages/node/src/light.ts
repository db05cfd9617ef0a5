// What the CLI needs on every `form node …` call without loading the daemon (libp2p, QEMU driver, …):
// paths, configuration and the pid/info files of a running formationd.
export * from './config.ts';
export * from './daemon-files.ts';
