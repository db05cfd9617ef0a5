import { integrationBlocker } from '../src/testing.ts';

export { fixture, integrationBlocker, pidsMentioning } from '../src/testing.ts';

/** node:test options: skip with the reason, or fail when FORM_REQUIRE_INTEGRATION=1. */
export function integrationOpts(needRoot = true): { skip?: string } {
  const why = integrationBlocker(needRoot);
  if (!why) return {};
  if (process.env.FORM_REQUIRE_INTEGRATION === '1') {
    throw new Error(`Integration prerequisite missing and FORM_REQUIRE_INTEGRATION=1: ${why}`);
  }
  return { skip: why };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
