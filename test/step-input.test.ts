/** `$.run` at each step's edge: a run "Prepare the run" wrote passes whole; anything else stops the step by name. */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { expectRun, type RunState } from '../lambdas/pipeline/state';

const RUN: RunState = {
  runId: 'run-1',
  environment: 'dev',
  startedAt: '2026-11-29T03:00:00.000Z',
  dryRun: false,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 3600,
  targets: ['public.orders'],
};

describe('expectRun', () => {
  it('returns the run a step was handed, every field kept', () => {
    expect(expectRun({ run: RUN, locks: {} })).toEqual(RUN);
  });

  it('names the field that is wrong and where a run comes from', () => {
    expect(() => expectRun({ run: { ...RUN, targets: 'public.orders' } })).toThrow(ConfigError);
    expect(() => expectRun({ run: { ...RUN, targets: 'public.orders' } })).toThrow(
      /^\$\.run is not a run this pipeline started \(\$\.run\.targets: .*\): the step input must come from "Prepare the run"\.$/,
    );
    const { dryRun: _, ...withoutDryRun } = RUN;
    expect(() => expectRun({ run: withoutDryRun })).toThrow(/\(\$\.run\.dryRun: /);
    expect(() => expectRun({ run: { ...RUN, maxWaitSeconds: '60' } })).toThrow(
      /\(\$\.run\.maxWaitSeconds: /,
    );
    expect(() => expectRun({})).toThrow(/^\$\.run is not a run this pipeline started \(\$\.run: /);
    expect(() => expectRun([])).toThrow('the step input must be a JSON object, not [].');
  });
});
