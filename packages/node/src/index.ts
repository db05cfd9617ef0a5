export {
  type DeploymentStatus,
  deploymentStatus,
  formatDeploymentStatus,
  type InstanceLike,
  vmNameFor,
} from '@formation/scheduler';
export * from './config.ts';
export * from './controller.ts';
export * from './daemon.ts';
export * from './daemon-files.ts';
export * from './devnet.ts';
export * from './doctor.ts';
