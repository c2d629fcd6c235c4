import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig, type RuntimeConfig, runtimeConfigJson } from '../lambdas/core/config';
import { timeoutSecondsFor } from '../lib/function-access';
import {
  LAMBDA_SERVICE_ERRORS,
  STATE,
  TASK_TIMEOUT_MARGIN_SECONDS,
} from '../lib/pipeline-definition';
import { type SynthesizedDefinition, synthesizeDefinition } from '../local/run/definition';

type AnyState = Record<string, unknown> & { Type: string };

let config: RuntimeConfig;
let synthesized: SynthesizedDefinition;
let states: Record<string, AnyState>;
let loadEachTable: Record<string, AnyState>;

beforeAll(() => {
  config = parseRuntimeConfig(
    JSON.parse(readFileSync('config/example.json', 'utf8')),
    'config/example.json',
  );
  synthesized = synthesizeDefinition(config);
  states = synthesized.definition.States as unknown as Record<string, AnyState>;
  loadEachTable = (
    states[STATE.loadEachTable]!.ItemProcessor as { States: Record<string, AnyState> }
  ).States;
});

/** Where each state can go next: Next, Choice branches (with their condition) and Default. */
function transitions(group: Record<string, AnyState>): Record<string, string[]> {
  return Object.fromEntries(
    Object.entries(group).map(([name, state]) => {
      const targets: string[] = [];
      for (const choice of (state.Choices as Record<string, unknown>[] | undefined) ?? []) {
        const { Next, Variable, ...test } = choice;
        targets.push(`${Variable} ${JSON.stringify(test)} -> ${Next}`);
      }
      if (state.Default) targets.push(`default -> ${state.Default}`);
      if (state.Next) targets.push(`-> ${state.Next}`);
      if (state.End) targets.push('end');
      return [name, targets];
    }),
  );
}

describe('the synthesized state machine definition', () => {
  it('starts by loading the configuration and runs for at most 24 hours', () => {
    expect(synthesized.definition.StartAt).toBe(STATE.loadConfiguration);
    expect(synthesized.definition.TimeoutSeconds).toBe(86_400);
  });

  it('has these states and transitions, named as sentences', () => {
    expect(transitions(states)).toEqual({
      [STATE.loadConfiguration]: [`-> ${STATE.prepareRun}`],
      [STATE.prepareRun]: [`-> ${STATE.isAnotherRunInProgress}`],
      [STATE.isAnotherRunInProgress]: [
        `$.notStarted {"IsPresent":true} -> ${STATE.sayNotStarted}`,
        `default -> ${STATE.isDryRun}`,
      ],
      [STATE.sayNotStarted]: [`-> ${STATE.anotherRunInProgress}`],
      [STATE.isDryRun]: [
        `$.run.dryRun {"BooleanEquals":true} -> ${STATE.dryRun}`,
        `default -> ${STATE.startUnload}`,
      ],
      [STATE.dryRun]: [`-> ${STATE.dryRunDone}`],
      [STATE.dryRunDone]: [],
      [STATE.startUnload]: [`-> ${STATE.waitForUnload}`],
      [STATE.waitForUnload]: [`-> ${STATE.checkUnload}`],
      [STATE.checkUnload]: [`-> ${STATE.hasUnloadFinished}`],
      [STATE.hasUnloadFinished]: [
        `$.unload.finished {"BooleanEquals":true} -> ${STATE.loadEachTable}`,
        `default -> ${STATE.waitForUnload}`,
      ],
      [STATE.loadEachTable]: [`-> ${STATE.checkLocks}`],
      [STATE.checkLocks]: [`-> ${STATE.isSafeToSwap}`],
      [STATE.isSafeToSwap]: [
        `$.locks.decision {"StringEquals":"swap"} -> ${STATE.swapTables}`,
        `$.locks.decision {"StringEquals":"terminate"} -> ${STATE.terminateBlockers}`,
        `default -> ${STATE.waitForBlockers}`,
      ],
      [STATE.terminateBlockers]: [`-> ${STATE.swapTables}`],
      [STATE.waitForBlockers]: [`-> ${STATE.checkLocks}`],
      [STATE.swapTables]: [`-> ${STATE.didSwapGoThrough}`],
      [STATE.didSwapGoThrough]: [
        `$.swap.swapped {"BooleanEquals":true} -> ${STATE.finishRun}`,
        `default -> ${STATE.waitForBlockers}`,
      ],
      [STATE.finishRun]: [`-> ${STATE.tablesLive}`],
      [STATE.tablesLive]: [],
      [STATE.failRun]: [`-> ${STATE.runFailed}`],
      [STATE.runFailed]: [],
      [STATE.anotherRunInProgress]: [],
    });
    expect(transitions(loadEachTable)).toEqual({
      [STATE.createStaging]: [`-> ${STATE.importFiles}`],
      [STATE.importFiles]: [`-> ${STATE.areFilesImported}`],
      [STATE.areFilesImported]: [
        `$.imported.remaining {"NumericGreaterThan":0} -> ${STATE.importFiles}`,
        `default -> ${STATE.checkStaging}`,
      ],
      [STATE.checkStaging]: ['end'],
    });
    expect(states[STATE.dryRunDone]!.Type).toBe('Succeed');
    expect(states[STATE.tablesLive]!.Type).toBe('Succeed');
    expect(states[STATE.anotherRunInProgress]!.Type).toBe('Succeed');
  });

  it('carries the normalized configuration, the execution input and the execution context', () => {
    const parameters = states[STATE.loadConfiguration]!.Parameters as Record<string, unknown>;
    expect(parameters).toEqual({
      config: runtimeConfigJson(config),
      'request.$': '$',
      context: {
        'stateMachineArn.$': '$$.StateMachine.Id',
        'executionArn.$': '$$.Execution.Id',
        'executionName.$': '$$.Execution.Name',
        'startedAt.$': '$$.Execution.StartTime',
      },
    });
    expect(parseRuntimeConfig(parameters.config, 'the definition')).toEqual(config);
  });

  it('binds each Task to its own function, keeping the results where later states read them', () => {
    expect(synthesized.handlerByState).toEqual({
      [STATE.prepareRun]: 'prepare-run',
      [STATE.dryRun]: 'dry-run',
      [STATE.startUnload]: 'start-unload',
      [STATE.checkUnload]: 'check-unload',
      [STATE.createStaging]: 'create-staging',
      [STATE.importFiles]: 'import-file',
      [STATE.checkStaging]: 'check-staging',
      [STATE.checkLocks]: 'check-locks',
      [STATE.terminateBlockers]: 'terminate-blockers',
      [STATE.swapTables]: 'swap-tables',
      [STATE.finishRun]: 'finish-run',
      [STATE.failRun]: 'fail-run',
    });
    const resultPath = (group: Record<string, AnyState>, name: string) =>
      'ResultPath' in group[name]! ? group[name]!.ResultPath : '(replaces $)';
    expect({
      prepareRun: resultPath(states, STATE.prepareRun),
      dryRun: resultPath(states, STATE.dryRun),
      startUnload: resultPath(states, STATE.startUnload),
      checkUnload: resultPath(states, STATE.checkUnload),
      loadEachTable: resultPath(states, STATE.loadEachTable),
      createStaging: resultPath(loadEachTable, STATE.createStaging),
      importFiles: resultPath(loadEachTable, STATE.importFiles),
      checkStaging: resultPath(loadEachTable, STATE.checkStaging),
      checkLocks: resultPath(states, STATE.checkLocks),
      terminateBlockers: resultPath(states, STATE.terminateBlockers),
      swapTables: resultPath(states, STATE.swapTables),
      finishRun: resultPath(states, STATE.finishRun),
      failRun: resultPath(states, STATE.failRun),
    }).toEqual({
      prepareRun: '(replaces $)',
      dryRun: '(replaces $)',
      startUnload: '$.unload',
      checkUnload: '$.unload',
      loadEachTable: '$.loaded',
      createStaging: null,
      importFiles: '$.imported',
      checkStaging: '(replaces $)',
      checkLocks: '$.locks',
      terminateBlockers: '$.terminated',
      swapTables: '$.swap',
      finishRun: '(replaces $)',
      failRun: '(replaces $)',
    });
  });

  it('loads up to 4 tables at once, and no Map iterates over files (they stay in the bucket)', () => {
    expect(states[STATE.loadEachTable]).toMatchObject({
      ItemsPath: '$.unload.tables',
      MaxConcurrency: 4,
      ItemSelector: { 'run.$': '$.run', 'table.$': '$$.Map.Item.Value' },
    });
    const maps = [...Object.values(states), ...Object.values(loadEachTable)].filter(
      (state) => state.Type === 'Map',
    );
    expect(maps.map((map) => map.ItemsPath)).toEqual(['$.unload.tables']);
  });

  it('polls the unload every 10 s and waits for blockers for the run’s poll interval', () => {
    expect(states[STATE.waitForUnload]).toMatchObject({ Type: 'Wait', Seconds: 10 });
    expect(states[STATE.waitForBlockers]).toMatchObject({
      Type: 'Wait',
      SecondsPath: '$.run.pollIntervalSeconds',
    });
  });

  it('ends a run refused as concurrent as succeeded, its output the NOT_STARTED summary', () => {
    expect(states[STATE.sayNotStarted]).toMatchObject({
      Type: 'Pass',
      OutputPath: '$.notStarted',
      Next: STATE.anotherRunInProgress,
    });
  });

  it('sends every failure of a top-level Task or Map to the cleanup, which itself has no catch', () => {
    const caught = Object.entries(states)
      .filter(([, state]) => state.Type === 'Task' || state.Type === 'Map')
      .map(([name, state]) => [name, state.Catch]);
    expect(caught.length).toBe(10);
    for (const [name, allCatchers] of caught) {
      const catchers = allCatchers as { ErrorEquals: string[] }[] | undefined;
      expect({ name, catchers }).toEqual({
        name,
        catchers:
          name === STATE.failRun
            ? undefined
            : [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: STATE.failRun }],
      });
    }
    expect(states[STATE.runFailed]).toEqual({
      Type: 'Fail',
      ErrorPath: '$.error',
      CausePath: '$.cause',
    });
  });

  it('retries only Lambda service errors, with full jitter, and gives each Task its function’s timeout plus a margin', () => {
    const tasks = [...Object.entries(states), ...Object.entries(loadEachTable)].filter(
      ([, state]) => state.Type === 'Task',
    );
    expect(tasks).toHaveLength(12);
    for (const [name, task] of tasks) {
      const handler = synthesized.handlerByState[name]!;
      expect({ name, retry: task.Retry, timeout: task.TimeoutSeconds }).toEqual({
        name,
        retry: [
          {
            ErrorEquals: LAMBDA_SERVICE_ERRORS,
            IntervalSeconds: 2,
            MaxAttempts: 3,
            BackoffRate: 2,
            JitterStrategy: 'FULL',
          },
        ],
        timeout: timeoutSecondsFor(handler, config.tables.length) + TASK_TIMEOUT_MARGIN_SECONDS,
      });
      expect(task.Resource).toMatch(/^arn:aws:lambda:[a-z0-9-]+:\d{12}:function:/);
      expect(task).not.toHaveProperty('Parameters');
    }
    // Lambda's own transient errors, as the Lambda service integration lists them
    // (https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html).
    expect([...LAMBDA_SERVICE_ERRORS].sort()).toEqual([
      'Lambda.AWSLambdaException',
      'Lambda.ClientExecutionTimeoutException',
      'Lambda.SdkClientException',
      'Lambda.ServiceException',
      'Lambda.TooManyRequestsException',
    ]);
  });

  it('is synthesized once per configuration, each call getting its own copy', () => {
    const again = synthesizeDefinition(config);
    expect(again).toEqual(synthesized);
    expect(again.definition).not.toBe(synthesized.definition);
    // A caller changing its copy changes nobody else's.
    again.definition.StartAt = 'changed';
    expect(synthesizeDefinition(config).definition.StartAt).toBe(STATE.loadConfiguration);
    // Another configuration is synthesized anew: the definition carries the configuration.
    const other = parseRuntimeConfig(
      { ...runtimeConfigJson(config), locks: { ...config.locks, maxWaitSeconds: 1234 } },
      'a changed configuration',
    );
    const configurationOf = (definition: SynthesizedDefinition) =>
      (definition.definition.States[STATE.loadConfiguration] as unknown as AnyState).Parameters;
    expect(JSON.stringify(configurationOf(synthesizeDefinition(other)))).toContain('1234');
    expect(JSON.stringify(configurationOf(synthesizeDefinition(config)))).not.toContain('1234');
  });
});
