import { FormError, isFormError } from '@formation/interface';

/** One step that undoes part of a component's start (close a socket, stop a timer, remove a file). */
export type StopStep = () => Promise<void> | void;

/**
 * One part of a daemon. `start` does its work, reading what earlier components left in `ctx` and
 * leaving its own running part there; each thing it opens is registered with `onStop` as soon as it is
 * open, so a start that fails half way is undone as far as it got.
 */
export interface Component<Ctx> {
  readonly name: string;
  start(ctx: Ctx, onStop: (step: StopStep) => void): Promise<void> | void;
}

/** The started components: `stop()` undoes them, last started first. */
export interface RunningComponents {
  /** Names of the components started, in start order. */
  readonly started: readonly string[];
  /** Run every stop step, last registered first; a step that fails is reported and the rest still run. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Told of a stop step that failed (the others still run). */
  onStopError?: (component: string, err: unknown) => void;
}

/**
 * Start `components` in order. On a start failure, stop what was started (the failing component's
 * steps registered so far first, then the earlier components in reverse) and rethrow the error with the
 * component's name in front of its message (a FormError keeps its code and hint, `details.component`
 * names the component, `cause` is the original).
 *
 * @example
 *   const running = await startComponents([{ name: 'a', start: (_, onStop) => onStop(() => {}) }], {});
 *   await running.stop();
 */
export async function startComponents<Ctx>(
  components: readonly Component<Ctx>[],
  ctx: Ctx,
  options: StartOptions = {},
): Promise<RunningComponents> {
  const steps: Array<{ component: string; step: StopStep }> = [];
  const started: string[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const { component, step } of steps.reverse()) {
      try {
        await step();
      } catch (err) {
        options.onStopError?.(component, err);
      }
    }
  };
  for (const c of components) {
    try {
      await c.start(ctx, (step) => {
        steps.push({ component: c.name, step });
      });
    } catch (err) {
      await stop();
      throw withComponentName(c.name, err);
    }
    started.push(c.name);
  }
  return { started, stop };
}

/** The start error of component `name`, named (pure). */
export function withComponentName(name: string, err: unknown): Error {
  const message = `${name}: ${err instanceof Error ? err.message : String(err)}`;
  if (isFormError(err)) {
    return new FormError(err.code, message, {
      hint: err.hint,
      details: { ...(err.details ?? {}), component: name },
      cause: err,
    });
  }
  const wrapped = new Error(message, { cause: err });
  const code = (err as { code?: unknown } | null)?.code;
  if (code !== undefined) Object.assign(wrapped, { code });
  return wrapped;
}
