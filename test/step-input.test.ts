/**
 * The state at each step's edge: what a step's predecessor wrote passes whole (defaults filled
 * in, keys of other steps dropped); anything else stops the step before it acts, with a
 * StepInputError naming the field, what is wrong and which state writes it. Lambda and the local
 * run call the same step functions, so both go through this parse.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import type { PipelineDeps } from '../lambdas/pipeline/deps';
import {
  blockerLine,
  parseStepInput,
  type RunState,
  STEP_INPUTS,
  StepInputError,
} from '../lambdas/pipeline/state';
import { PIPELINE_STEPS } from '../lambdas/pipeline/steps';
import { BLOCKER_BEFORE_POLICY, GATE_HISTORY, LOCK_CHECK } from './support/lock-states';

const RUN: RunState = {
  runId: 'run-1',
  environment: 'dev',
  startedAt: '2026-11-29T03:00:00.000Z',
  dryRun: false,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 3600,
  targets: ['public.orders'],
};

const RUNNING_UNLOAD = {
  finished: false,
  sessionId: 'session-1',
  batch: 0,
  batches: 2,
  statementId: 'statement-1',
  status: 'STARTED',
  transactionStartedAt: null,
};

function refusal(schema: Parameters<typeof parseStepInput>[0], state: unknown): StepInputError {
  try {
    parseStepInput(schema, state);
  } catch (error) {
    expect(error).toBeInstanceOf(StepInputError);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).name).toBe('StepInputError');
    expect((error as Error).cause).toBeDefined();
    return error as StepInputError;
  }
  throw new Error(`parsed ${JSON.stringify(state)}`);
}

describe('$.run', () => {
  it('returns the run a step was handed, every field kept, the keys of other steps dropped', () => {
    expect(parseStepInput(STEP_INPUTS.run, { run: RUN, unload: { finished: true } })).toEqual({
      run: RUN,
    });
  });

  it('names the field that is wrong and where a run comes from', () => {
    expect(refusal(STEP_INPUTS.run, { run: { ...RUN, targets: 'public.orders' } }).message).toMatch(
      /^\$\.run is not a run this pipeline started \(\$\.run\.targets: .*\): the step input must come from "Prepare the run"\.$/,
    );
    const { dryRun: _, ...withoutDryRun } = RUN;
    expect(refusal(STEP_INPUTS.run, { run: withoutDryRun }).message).toMatch(
      /\(\$\.run\.dryRun: Invalid input: expected boolean, received undefined\)/,
    );
    expect(refusal(STEP_INPUTS.run, { run: { ...RUN, maxWaitSeconds: '60' } }).message).toMatch(
      /\(\$\.run\.maxWaitSeconds: /,
    );
    expect(refusal(STEP_INPUTS.run, { run: { ...RUN, targets: ['a.b', 7] } }).message).toMatch(
      /\(\$\.run\.targets\[1\]: Invalid input: expected string, received number\)/,
    );
    expect(refusal(STEP_INPUTS.run, {}).message).toMatch(
      /^\$\.run is not a run this pipeline started \(\$\.run: /,
    );
    expect(refusal(STEP_INPUTS.run, []).message).toBe(
      'the step input must be a JSON object, not [].',
    );
  });

  it('holds maxWaitSeconds and pollIntervalSeconds to the limits the configuration has', () => {
    expect(refusal(STEP_INPUTS.run, { run: { ...RUN, maxWaitSeconds: 86_401 } }).message).toMatch(
      /\(\$\.run\.maxWaitSeconds: Too big: expected number to be <=86400\)/,
    );
    expect(refusal(STEP_INPUTS.run, { run: { ...RUN, pollIntervalSeconds: 0 } }).message).toMatch(
      /\(\$\.run\.pollIntervalSeconds: Too small: expected number to be >=1\)/,
    );
  });
});

describe('the parts later steps read', () => {
  it('check-unload: an unload in progress, every field', () => {
    expect(
      parseStepInput(STEP_INPUTS.checkUnload, { run: RUN, unload: RUNNING_UNLOAD }).unload,
    ).toEqual(RUNNING_UNLOAD);
    const { transactionStartedAt: _, ...withoutStart } = RUNNING_UNLOAD;
    expect(refusal(STEP_INPUTS.checkUnload, { run: RUN, unload: withoutStart }).message).toBe(
      '$.unload is not an unload in progress ($.unload.transactionStartedAt: Invalid input: expected string, received undefined): the step input must come from "Unload the tables from Redshift".',
    );
    expect(
      refusal(STEP_INPUTS.checkUnload, { run: RUN, unload: { ...RUNNING_UNLOAD, finished: true } })
        .message,
    ).toMatch(/^\$\.unload is not an unload in progress \(\$\.unload\.finished: /);
  });

  it('load: $.table, and $.imported from the start when absent', () => {
    expect(
      parseStepInput(STEP_INPUTS.table, { run: RUN, table: { target: 'public.orders', files: 3 } }),
    ).toEqual({
      run: RUN,
      table: { target: 'public.orders', files: 3 },
      imported: { next: 0, remaining: 0, rows: 0 },
    });
    expect(
      refusal(STEP_INPUTS.table, { run: RUN, table: { target: 'public.orders', files: '3' } })
        .message,
    ).toBe(
      '$.table is not a table of the run and its number of files ($.table.files: Invalid input: expected number, received string): the step input must come from "Check whether the unload finished".',
    );
    expect(
      refusal(STEP_INPUTS.table, {
        run: RUN,
        table: { target: 'public.orders', files: 3 },
        imported: { next: 1.5, remaining: 1, rows: 0 },
      }).message,
    ).toMatch(
      /^\$\.imported is not an import's progress \(\$\.imported\.next: .*"Import files into staging"\.$/,
    );
  });

  it('the lock gate: $.locks, $.terminated and $.swap, each where it is wrong', () => {
    const gate = parseStepInput(STEP_INPUTS.gate, {
      run: RUN,
      locks: LOCK_CHECK,
      swap: { swapped: false, attempts: 3, reason: 'busy', history: GATE_HISTORY },
    });
    expect(gate.locks).toEqual(LOCK_CHECK);
    expect(gate.swap).toEqual({
      swapped: false,
      attempts: 3,
      reason: 'busy',
      history: GATE_HISTORY,
    });
    expect(
      refusal(STEP_INPUTS.gate, {
        run: RUN,
        locks: { ...LOCK_CHECK, history: { ...GATE_HISTORY, busyAttempts: '1' } },
      }).message,
    ).toMatch(
      /^\$\.locks is not a lock check \(\$\.locks\.history\.busyAttempts: .*\): the step input must come from "Check locks on the live tables"\.$/,
    );
    expect(
      refusal(STEP_INPUTS.gate, {
        run: RUN,
        locks: { ...LOCK_CHECK, blockersSeen: [{ pid: 1 }] },
      }).message,
    ).toMatch(/\(\$\.locks\.blockersSeen\[0\]\.user: /);
    expect(
      refusal(STEP_INPUTS.gate, {
        run: RUN,
        terminated: {
          terminated: [],
          history: { ...GATE_HISTORY, collisions: new Array(51).fill({ session: '1', count: 1 }) },
        },
      }).message,
    ).toMatch(
      /^\$\.terminated is not a round of ending blockers \(\$\.terminated\.history\.collisions: Too big: expected array to have <=50 items\)/,
    );
    expect(
      refusal(STEP_INPUTS.gate, { run: RUN, swap: { swapped: false, attempts: 1 } }).message,
    ).toMatch(/^\$\.swap is not a swap attempt \(\$\.swap\.reason: /);
  });

  it('the lock gate: reads a $.locks written before the per-class policy (a deploy during the wait)', () => {
    const before = BLOCKER_BEFORE_POLICY;
    const gate = parseStepInput(STEP_INPUTS.gate, {
      run: RUN,
      locks: { ...LOCK_CHECK, blockers: [before], blockersSeen: [before] },
    });
    expect(gate.locks!.blockersSeen).toEqual([before]);
    expect(blockerLine(gate.locks!.blockersSeen[0]!)).toBe('an open transaction holds the table');
  });

  it('fail-run: reads what parses and leaves out what does not, so the clean-up and the notice still run', () => {
    const end = parseStepInput(STEP_INPUTS.fail, {
      run: RUN,
      error: { Error: 'States.Timeout' },
      unload: { ...RUNNING_UNLOAD, finished: true, tables: [] },
      locks: { decision: 'maybe' },
    });
    expect(end).toEqual({
      run: RUN,
      error: { Error: 'States.Timeout' },
      unload: null,
      loaded: undefined,
      locks: undefined,
      terminated: undefined,
      swap: undefined,
    });
    expect(parseStepInput(STEP_INPUTS.fail, { run: RUN, unload: RUNNING_UNLOAD }).unload).toEqual(
      RUNNING_UNLOAD,
    );
  });
});

describe('every step', () => {
  // A deps that fails the test if a step reaches it: the parse comes before anything is done.
  const untouched = new Proxy({} as PipelineDeps, {
    get: (_, key) => {
      throw new Error(`the step used deps.${String(key)} before it parsed its input`);
    },
  });

  it.each(Object.keys(PIPELINE_STEPS) as (keyof typeof PIPELINE_STEPS)[])(
    '%s refuses an input that is not a JSON object before it acts',
    async (name) => {
      await expect(PIPELINE_STEPS[name]('not a state', untouched)).rejects.toThrow(
        new StepInputError('the step input must be a JSON object, not "not a state".'),
      );
    },
  );

  it.each(
    (Object.keys(PIPELINE_STEPS) as (keyof typeof PIPELINE_STEPS)[]).filter(
      (name) => name !== 'prepare-run' && name !== 'fail-run',
    ),
  )('%s refuses a state without a run', async (name) => {
    await expect(PIPELINE_STEPS[name]({ table: {} }, untouched)).rejects.toThrow(
      /^\$\.run is not a run this pipeline started/,
    );
  });
});
