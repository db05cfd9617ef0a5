import { homedir } from 'node:os';
import { join } from 'node:path';

/** The data directory: `$FORM_HOME`, else `~/.formation`. Never inside the source tree. */
export function formHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.FORM_HOME?.trim();
  return fromEnv ? fromEnv : join(homedir(), '.formation');
}
