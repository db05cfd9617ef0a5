import { dirname, join } from 'node:path';
import { FormError } from '@formation/interface';
import type { DevnetState } from './devnet-state.ts';

// `form devnet exec`: which namespace and environment a target name means (pure).

/** What `form devnet exec <target>` runs in: a node (node1, n1, 1), `laptop`, `visitor`, `router` or `internet`. */
export interface DevnetExecTarget {
  netns: string;
  /** Environment for the command (the laptop's FORM_HOME and PATH). */
  env: Record<string, string>;
  /** Drop the caller's FORM_* variables (FORM_PORT_OFFSET, FORM_NODE …): the laptop shares nothing with this shell. */
  isolated?: boolean;
}

/** The environment `form devnet exec` gives a target's command: the caller's, minus FORM_* for an isolated one. */
export function devnetExecEnv(t: DevnetExecTarget, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base))
    if (!t.isolated || !k.startsWith('FORM_') || k === 'FORM_LOG_LEVEL') env[k] = v;
  return { ...env, ...t.env };
}

/** Resolve an exec target of devnet `s` (pure; CLI_USAGE/NOT_FOUND for a name it does not have). */
export function devnetExecTarget(s: DevnetState, target: string, basePath = process.env.PATH ?? ''): DevnetExecTarget {
  const n = s.nodes.find((x) => x.name === target || String(x.index) === target || `n${x.index}` === target);
  if (n) return { netns: n.netns, env: {} };
  const w = s.world;
  const names = [...s.nodes.map((x) => x.name), ...(w ? ['laptop', 'visitor', 'router', 'internet'] : [])];
  if (w) {
    if (target === 'laptop' || target === 'lap') {
      const nodeDir = dirname(process.execPath);
      return {
        netns: w.plan.laptop.netns,
        isolated: true,
        env: { FORM_HOME: w.laptopHome, PATH: `${join(w.laptopHome, 'bin')}:${nodeDir}:${basePath}` },
      };
    }
    if (target === 'visitor' || target === 'vis') return { netns: w.plan.visitor.netns, env: {} };
    if (target === 'router' || target === 'rtr') return { netns: w.plan.router.netns, env: {} };
    if (target === 'internet' || target === 'net') return { netns: w.plan.internet.netns, env: {} };
  }
  throw new FormError(
    'NOT_FOUND',
    `Cannot exec in ${target}: this devnet has no such namespace (have ${names.join(', ')})`,
    {
      hint:
        s.mode === 'world'
          ? undefined
          : 'laptop, visitor and router exist in world mode only (`form devnet up` without --local).',
    },
  );
}
