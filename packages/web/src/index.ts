export type * from '@formation/interface/web-api';
export {
  createWebService,
  DEFAULT_STATIC_DIR,
  SESSION_COOKIE,
  type WebService,
  type WebServiceOptions,
} from './server/service.ts';
export { SessionStore } from './server/sessions.ts';
export { type NodeApiUrls, UPSTREAM_CALLS } from './server/upstream.ts';
