import { type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger };

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/**
 * The root structured logger. Components take a child: `rootLogger.child({ component: 'vmm' })`.
 * Level from the argument, else `FORM_LOG_LEVEL`, else `info`; tests set `silent`.
 * Secrets are redacted by path wherever they appear.
 */
export function createLogger(level?: string, destination?: string | number): Logger {
  const wanted = (level ?? process.env.FORM_LOG_LEVEL ?? 'info').toLowerCase();
  const lvl = (LEVELS.has(wanted) ? wanted : 'info') as LevelWithSilent;
  const opts = {
    level: lvl,
    base: { pid: process.pid },
    redact: {
      paths: [
        'privateKey',
        '*.privateKey',
        'passwd',
        '*.passwd',
        'password',
        '*.password',
        'headers["x-form-signature"]',
      ],
      censor: '[redacted]',
    },
  };
  if (destination === undefined) return pino(opts);
  return typeof destination === 'number'
    ? pino(opts, pino.destination({ dest: destination, sync: true }))
    : pino(opts, pino.destination({ dest: destination, mkdir: true, sync: false }));
}
