/**
 * The control flow of the synthesized state machine, run with aws-local-stepfunctions. Each
 * Task is bound to a test double of its step (the steps themselves are tested elsewhere, on
 * PostgreSQL): these tests prove which states run, in what order, with what input.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { PipelineFunctionName } from '../lib/function-access';
import { STATE } from '../lib/pipeline-definition';
import {
  type ExecutionEvent,
  type LocalHandler,
  runDefinition,
  type SynthesizedDefinition,
  synthesizeDefinition,
} from '../local/run/definition';

// biome-ignore lint/suspicious/noExplicitAny: step inputs are free-form JSON in these doubles
type State = any;

const RUN = {
  runId: 'run-1',
  environment: 'test',
  startedAt: '2030-01-01T03:00:00.000Z',
  dryRun: false,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 3600,
  targets: ['public.orders', 'public.order_items'],
};

const UNLOADED_TABLES = [
  { target: 'public.orders', files: 2 },
  { target: 'public.order_items', files: 1 },
];

/** Rows in every file the import double imports. */
const ROWS_PER_FILE = 3;

/** The import step's double: imports up to `perCall` files per call, as the real one does in its time. */
function importInCalls(perCall: number): LocalHandler {
  return async (input: State) => {
    const from = input.imported?.next ?? 0;
    const next = Math.min(input.table.files, from + perCall);
    return {
      next,
      remaining: input.table.files - next,
      rows: (input.imported?.rows ?? 0) + (next - from) * ROWS_PER_FILE,
    };
  };
}

class NamedError extends Error {
  constructor(name: string, message: string) {
    super(message);
    this.name = name;
  }
}

/** Test doubles of every step, each answering as the real one does on a smooth run. */
function smoothRun(): Record<PipelineFunctionName, LocalHandler> {
  return {
    'prepare-run': async () => ({ run: RUN }),
    'dry-run': async (input: State) => ({ status: 'DRY_RUN', runId: input.run.runId }),
    'start-unload': async () => ({ finished: false, statementId: 's-1', status: 'SUBMITTED' }),
    'check-unload': async () => ({
      finished: true,
      statementId: 's-1',
      status: 'FINISHED',
      tables: UNLOADED_TABLES,
    }),
    'create-staging': async () => ({ thisResult: 'is discarded' }),
    'import-file': importInCalls(1),
    'check-staging': async (input: State) => ({
      target: input.table.target,
      rows: input.imported.rows,
    }),
    'check-locks': async () => ({ decision: 'swap', waitedSeconds: 0, blockers: [] }),
    'terminate-blockers': async () => ({ terminated: [4242] }),
    'swap-tables': async () => ({ swapped: true, attempts: 1 }),
    'finish-run': async (input: State) => ({ status: 'SUCCEEDED', tables: input.loaded }),
    'fail-run': async (input: State) => ({
      error: input.error.Error,
      cause: `cleaned up after: ${input.error.Cause}`,
    }),
  };
}

/** Answers in turn, repeating the last answer. */
function inTurn(...answers: (() => unknown)[]): LocalHandler {
  let call = 0;
  return async () => answers[Math.min(call++, answers.length - 1)]!();
}

let synthesized: SynthesizedDefinition;

beforeAll(() => {
  const config = parseRuntimeConfig(
    JSON.parse(readFileSync('config/example.json', 'utf8')),
    'config/example.json',
  );
  synthesized = synthesizeDefinition(config);
});

interface Recorded {
  readonly outcome: Awaited<ReturnType<typeof runDefinition>>;
  /** Top-level states in the order they were entered. */
  readonly path: string[];
  /** Every step call, in order, with its input. */
  readonly calls: { handler: PipelineFunctionName; input: State }[];
  inputsOf(handler: PipelineFunctionName): State[];
  /** The largest input or output of any state, in bytes of JSON (Step Functions' 256 KB limit). */
  readonly largestStateBytes: number;
}

async function run(
  changes: Partial<Record<PipelineFunctionName, LocalHandler>> = {},
  options: { readonly realBlockerWait?: boolean; readonly input?: unknown } = {},
): Promise<Recorded> {
  const calls: Recorded['calls'] = [];
  const handlers = { ...smoothRun(), ...changes };
  const recording = Object.fromEntries(
    Object.entries(handlers).map(([handler, fn]) => [
      handler,
      async (input: unknown) => {
        calls.push({ handler: handler as PipelineFunctionName, input });
        return fn(input);
      },
    ]),
  );
  const path: string[] = [];
  let largestStateBytes = 0;
  const outcome = await runDefinition(synthesized, recording, options.input ?? {}, {
    executionName: 'run-1',
    waitTimeOverrides: {
      [STATE.waitForUnload]: 1,
      ...(options.realBlockerWait ? {} : { [STATE.waitForBlockers]: 1 }),
    },
    retryIntervalOverrides: Object.fromEntries(
      Object.keys(synthesized.handlerByState).map((state) => [state, 1]),
    ),
    onEvent: (event: ExecutionEvent) => {
      if (event.type === 'StateEntered' && event.index === undefined) path.push(event.state.name);
      if ('state' in event) {
        for (const value of [event.state.input, event.state.output]) {
          const bytes = Buffer.byteLength(JSON.stringify(value ?? null), 'utf8');
          largestStateBytes = Math.max(largestStateBytes, bytes);
        }
      }
    },
  });
  return {
    outcome,
    path,
    calls,
    largestStateBytes,
    inputsOf: (handler) =>
      calls.filter((call) => call.handler === handler).map((call) => call.input),
  };
}

const HAPPY_PATH = [
  STATE.loadConfiguration,
  STATE.prepareRun,
  STATE.isAnotherRunInProgress,
  STATE.isDryRun,
  STATE.startUnload,
  STATE.waitForUnload,
  STATE.checkUnload,
  STATE.hasUnloadFinished,
  STATE.loadEachTable,
  STATE.checkLocks,
  STATE.isSafeToSwap,
  STATE.swapTables,
  STATE.didSwapGoThrough,
  STATE.finishRun,
  STATE.tablesLive,
];

describe('the state machine, run locally', () => {
  it('runs a smooth run through every stage and ends with the run summary', async () => {
    const result = await run({}, { input: { tables: ['public.orders'] } });
    expect(result.path).toEqual(HAPPY_PATH);
    expect(result.outcome).toEqual({
      status: 'SUCCEEDED',
      output: {
        status: 'SUCCEEDED',
        tables: [
          { target: 'public.orders', rows: 6 },
          { target: 'public.order_items', rows: 3 },
        ],
      },
    });

    const [prepareInput] = result.inputsOf('prepare-run');
    expect(prepareInput.request).toEqual({ tables: ['public.orders'] });
    expect(prepareInput.config.tables.map((table: State) => table.target)).toEqual([
      'public.orders',
      'public.order_items',
      'reporting.campaign_stats',
    ]);
    expect(prepareInput.context).toMatchObject({
      executionName: 'run-1',
      stateMachineArn: expect.stringMatching(/^arn:aws:states:/),
      startedAt: expect.any(String),
    });

    // One call per file here (the double imports one per call): each continues where the
    // last one stopped, and the table is checked once all of its files are in.
    const imports = result.inputsOf('import-file');
    expect(
      imports.map((input) => [input.table.target, input.imported?.next ?? 'first']).sort(),
    ).toEqual([
      ['public.order_items', 'first'],
      ['public.orders', 1],
      ['public.orders', 'first'],
    ]);
    for (const input of imports) expect(input.run).toEqual(RUN);
    for (const input of result.inputsOf('create-staging')) {
      expect(Object.keys(input).sort()).toEqual(['run', 'table']);
    }
    const staging = result.inputsOf('check-staging');
    expect(staging.map((input) => input.imported).sort((a, b) => a.rows - b.rows)).toEqual([
      { next: 1, remaining: 0, rows: 3 },
      { next: 2, remaining: 0, rows: 6 },
    ]);
    for (const input of staging) expect(input).not.toHaveProperty('thisResult');

    const [finishInput] = result.inputsOf('finish-run');
    expect(finishInput).toMatchObject({
      run: RUN,
      unload: { finished: true },
      locks: { decision: 'swap' },
      swap: { swapped: true },
    });
    expect(result.inputsOf('fail-run')).toEqual([]);
  });

  it('keeps every state far below 256 KB for 400 tables, one with 5,000 files', async () => {
    const targets = Array.from({ length: 400 }, (_, index) => `sales.table_${index}`);
    const tables = targets.map((target, index) => ({ target, files: index === 0 ? 5_000 : 16 }));
    const result = await run({
      'prepare-run': async () => ({ run: { ...RUN, targets } }),
      'check-unload': async () => ({
        finished: true,
        sessionId: 'session-1',
        batches: 22,
        statementId: 's-22',
        status: 'FINISHED',
        tables,
      }),
      // As many files as fit in one call's time: here 250.
      'import-file': importInCalls(250),
      'finish-run': async (input: State) => ({ status: 'SUCCEEDED', loaded: input.loaded.length }),
    });
    expect(result.outcome).toEqual({
      status: 'SUCCEEDED',
      output: { status: 'SUCCEEDED', loaded: 400 },
    });
    const bigTable = result
      .inputsOf('import-file')
      .filter((input) => input.table.target === 'sales.table_0');
    expect(bigTable).toHaveLength(20);
    const [checked] = result
      .inputsOf('check-staging')
      .filter((input) => input.table.target === 'sales.table_0');
    expect(checked.imported).toEqual({ next: 5_000, remaining: 0, rows: 5_000 * ROWS_PER_FILE });
    console.info(
      `largest state of a 400-table run (one table of 5,000 files): ${result.largestStateBytes} bytes`,
    );
    // The state grows with the tables (names, counts, results), never with the files.
    expect(result.largestStateBytes).toBeLessThan(100 * 1024);
  }, 120_000);

  it('describes a dry run and stops, unloading nothing', async () => {
    const result = await run({ 'prepare-run': async () => ({ run: { ...RUN, dryRun: true } }) });
    expect(result.path).toEqual([
      STATE.loadConfiguration,
      STATE.prepareRun,
      STATE.isAnotherRunInProgress,
      STATE.isDryRun,
      STATE.dryRun,
      STATE.dryRunDone,
    ]);
    expect(result.outcome).toEqual({
      status: 'SUCCEEDED',
      output: { status: 'DRY_RUN', runId: 'run-1' },
    });
    expect(result.calls.map((call) => call.handler)).toEqual(['prepare-run', 'dry-run']);
  });

  it('keeps waiting for the unload until it has finished', async () => {
    const pending = () => ({ finished: false, statementId: 's-1', status: 'STARTED' });
    const done = () => ({ finished: true, statementId: 's-1', status: 'FINISHED', tables: [] });
    const result = await run({ 'check-unload': inTurn(pending, pending, done) });
    const polling = [STATE.waitForUnload, STATE.checkUnload, STATE.hasUnloadFinished];
    expect(result.path.slice(4, 14)).toEqual([
      STATE.startUnload,
      ...polling,
      ...polling,
      ...polling,
    ]);
    expect(result.inputsOf('check-unload').map((input) => input.unload.status)).toEqual([
      'SUBMITTED',
      'STARTED',
      'STARTED',
    ]);
    expect(result.outcome.status).toBe('SUCCEEDED');
  });

  it('waits for blockers and looks again until the locks are free', async () => {
    const blocked = () => ({
      decision: 'wait',
      waitedSeconds: 5,
      blockers: [{ pid: 4242, reason: 'pid 4242 holds AccessShareLock' }],
    });
    const free = () => ({ decision: 'swap', waitedSeconds: 9, blockers: [] });
    const result = await run({ 'check-locks': inTurn(blocked, blocked, free) });
    const waiting = [STATE.checkLocks, STATE.isSafeToSwap, STATE.waitForBlockers];
    expect(result.path.slice(9)).toEqual([
      ...waiting,
      ...waiting,
      STATE.checkLocks,
      STATE.isSafeToSwap,
      STATE.swapTables,
      STATE.didSwapGoThrough,
      STATE.finishRun,
      STATE.tablesLive,
    ]);
    // Each look sees what the previous one found.
    expect(result.inputsOf('check-locks').map((input) => input.locks?.decision)).toEqual([
      undefined,
      'wait',
      'wait',
    ]);
  });

  it('waits the run’s poll interval between looks at the locks', async () => {
    const blocked = () => ({ decision: 'wait', waitedSeconds: 0, blockers: [] });
    const free = () => ({ decision: 'swap', waitedSeconds: 1, blockers: [] });
    const started = Date.now();
    const result = await run({ 'check-locks': inTurn(blocked, free) }, { realBlockerWait: true });
    expect(result.outcome.status).toBe('SUCCEEDED');
    expect(Date.now() - started).toBeGreaterThanOrEqual(RUN.pollIntervalSeconds * 1000 - 50);
  });

  it('goes back to waiting when a swap attempt comes back busy', async () => {
    const busy = () => ({ swapped: false, attempts: 3, reason: 'lock_timeout' });
    const swapped = () => ({ swapped: true, attempts: 1 });
    const result = await run({ 'swap-tables': inTurn(busy, swapped) });
    expect(result.path.slice(9)).toEqual([
      STATE.checkLocks,
      STATE.isSafeToSwap,
      STATE.swapTables,
      STATE.didSwapGoThrough,
      STATE.waitForBlockers,
      STATE.checkLocks,
      STATE.isSafeToSwap,
      STATE.swapTables,
      STATE.didSwapGoThrough,
      STATE.finishRun,
      STATE.tablesLive,
    ]);
    expect(result.inputsOf('check-locks')[1].swap).toEqual(busy());
  });

  it('ends the blocking sessions and then swaps when the lock check says terminate', async () => {
    const result = await run({
      'check-locks': async () => ({ decision: 'terminate', waitedSeconds: 3600, blockers: [] }),
    });
    expect(result.path.slice(9)).toEqual([
      STATE.checkLocks,
      STATE.isSafeToSwap,
      STATE.terminateBlockers,
      STATE.swapTables,
      STATE.didSwapGoThrough,
      STATE.finishRun,
      STATE.tablesLive,
    ]);
    expect(result.inputsOf('swap-tables')[0].terminated).toEqual({ terminated: [4242] });
  });

  describe('a failure in any stage', () => {
    const failing: [PipelineFunctionName, Partial<Record<PipelineFunctionName, LocalHandler>>][] = [
      ['prepare-run', {}],
      ['dry-run', { 'prepare-run': async () => ({ run: { ...RUN, dryRun: true } }) }],
      ['start-unload', {}],
      ['check-unload', {}],
      ['create-staging', {}],
      ['import-file', {}],
      ['check-staging', {}],
      ['check-locks', {}],
      [
        'terminate-blockers',
        { 'check-locks': async () => ({ decision: 'terminate', waitedSeconds: 1, blockers: [] }) },
      ],
      ['swap-tables', {}],
      ['finish-run', {}],
    ];

    it.each(failing)('%s: cleans up and fails the run with the cause', async (handler, setup) => {
      const result = await run({
        ...setup,
        [handler]: async () => {
          throw new NamedError('StepFailedError', `${handler} could not go on`);
        },
      });
      expect(result.outcome).toEqual({
        status: 'FAILED',
        error: 'StepFailedError',
        cause: `cleaned up after: ${handler} could not go on`,
      });
      expect(result.path.slice(-2)).toEqual([STATE.failRun, STATE.runFailed]);
      const [failInput] = result.inputsOf('fail-run');
      expect(failInput.error).toEqual({
        Error: 'StepFailedError',
        Cause: `${handler} could not go on`,
      });
      if (handler === 'prepare-run') {
        expect(failInput).not.toHaveProperty('run');
        expect(failInput).toHaveProperty('config');
      } else {
        expect(failInput.run.runId).toBe('run-1');
      }
      expect(result.inputsOf('finish-run').length).toBe(handler === 'finish-run' ? 1 : 0);
    });

    it('is not retried when the step itself failed, and is when Lambda was throttled', async () => {
      const refused = await run({
        'prepare-run': async () => {
          throw new NamedError('ConfigError', 'public.x is not a configured target');
        },
      });
      expect(refused.inputsOf('prepare-run')).toHaveLength(1);
      expect(refused.outcome).toMatchObject({ status: 'FAILED', error: 'ConfigError' });

      const throttled = await run({
        'prepare-run': inTurn(
          () => {
            throw new NamedError('Lambda.TooManyRequestsException', 'Rate exceeded');
          },
          () => ({ run: RUN }),
        ),
      });
      expect(throttled.inputsOf('prepare-run')).toHaveLength(2);
      expect(throttled.outcome.status).toBe('SUCCEEDED');
    });

    it('fails with the cleanup’s own error when the cleanup fails, which nothing catches', async () => {
      const result = await run({
        'swap-tables': async () => {
          throw new NamedError('StepFailedError', 'swap broke');
        },
        'fail-run': async () => {
          throw new NamedError('CleanupError', 'could not reach the topic');
        },
      });
      expect(result.outcome).toEqual({
        status: 'FAILED',
        error: 'CleanupError',
        cause: 'could not reach the topic',
      });
      expect(result.path.at(-1)).toBe(STATE.failRun);
    });
  });

  it('ends a run refused because another is in progress as succeeded, without cleanup or notice', async () => {
    const notStarted = {
      status: 'NOT_STARTED',
      tables: [],
      error: { name: 'RunInProgress', message: 'another run of test is in progress (run-0)' },
    };
    const result = await run({ 'prepare-run': async () => ({ notStarted }) });
    expect(result.outcome).toMatchObject({ status: 'SUCCEEDED', output: notStarted });
    expect(result.path).toEqual([
      STATE.loadConfiguration,
      STATE.prepareRun,
      STATE.isAnotherRunInProgress,
      STATE.sayNotStarted,
      STATE.anotherRunInProgress,
    ]);
    // fail-run is what deletes run files, drops staging and pages: none of it may happen.
    expect(result.calls.map((call) => call.handler)).toEqual(['prepare-run']);
  });

  it('checks a definition against the States Language each run until one passes', async () => {
    // Validated once per definition text (local/run/definition.ts): a definition that failed
    // is not remembered, so it fails again; a changed copy of a valid one is checked anew.
    const broken = structuredClone(synthesized);
    (broken.definition.States[STATE.loadConfiguration] as { Type: string }).Type = 'Nonsense';
    for (let attempt = 0; attempt < 2; attempt++) {
      await expect(runDefinition(broken, smoothRun(), {})).rejects.toThrow(
        /State machine definition is invalid/,
      );
    }
    expect((await run(smoothRun())).outcome.status).toBe('SUCCEEDED');
    expect((await run(smoothRun())).outcome.status).toBe('SUCCEEDED');
  });

  it('refuses to start without a handler for every Task', async () => {
    const { 'check-staging': _, ...incomplete } = smoothRun();
    await expect(runDefinition(synthesized, incomplete, {})).rejects.toThrow(
      'no local handler for check-staging',
    );
  });
});
