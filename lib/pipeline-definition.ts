/**
 * The state machine's definition, as a function of the Lambda functions and the runtime
 * configuration, so it can be built and tested apart from the rest of the stack. JSONPath
 * only (aws-local-stepfunctions runs the same definition locally). State names read as
 * sentences in the console.
 *
 * Prepare -> (dry run: describe, done) -> unload and poll -> per table: staging, import its
 * files (a call per batch of files), quality gate -> wait for locks -> swap ("not now" goes back to waiting) -> finish.
 * Any failure: clean up, then fail with the cause fail-run wrote.
 */
import { Duration } from 'aws-cdk-lib';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import {
  Choice,
  Condition,
  Fail,
  type IChainable,
  JitterType,
  JsonPath,
  Map as MapState,
  Pass,
  Succeed,
  Timeout,
  Wait,
  WaitTime,
} from 'aws-cdk-lib/aws-stepfunctions';
import { LambdaInvoke } from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';
import { type RuntimeConfig, runtimeConfigJson } from '../lambdas/core/config';
import { type PipelineFunctionName, timeoutSecondsFor } from './function-access';

/** Every state's name, so tests, the local run and its progress display refer to the same ones. */
export const STATE = {
  loadConfiguration: 'Load the configuration',
  prepareRun: 'Prepare the run',
  isAnotherRunInProgress: 'Is another run in progress?',
  sayNotStarted: 'Say why the run did not start',
  anotherRunInProgress: 'Another run is in progress',
  isDryRun: 'Is this a dry run?',
  dryRun: 'Describe the dry run',
  dryRunDone: 'The dry run is done',
  startUnload: 'Unload the tables from Redshift',
  waitForUnload: 'Wait for the unload',
  checkUnload: 'Check whether the unload finished',
  hasUnloadFinished: 'Has the unload finished?',
  loadEachTable: 'Load each table',
  createStaging: 'Create the staging table',
  importFiles: 'Import files into staging',
  areFilesImported: 'Are all files imported?',
  checkStaging: 'Check the staging table against Redshift',
  checkLocks: 'Check locks on the live tables',
  isSafeToSwap: 'Is it safe to swap now?',
  terminateBlockers: 'Terminate the sessions blocking the swap',
  waitForBlockers: 'Wait for the blockers to finish',
  swapTables: 'Swap staging into live',
  didSwapGoThrough: 'Did the swap go through?',
  finishRun: 'Record the run and clean up',
  tablesLive: 'The tables are live',
  failRun: 'Clean up after the failed run',
  runFailed: 'The run failed',
} as const;

/**
 * How long "Wait for the unload" waits between two checks (each of which follows the unload
 * for up to 50 s itself: UNLOAD_CHECK_BUDGET_MS).
 */
export const UNLOAD_POLL_SECONDS = 10;
/** Tables loaded at once: each runs its own Data API calls against Aurora. */
export const TABLE_CONCURRENCY = 4;

/**
 * Transient failures of the Lambda service itself (not of our code): retried after 2 s and
 * 4 s, with full jitter so parallel Map iterations do not retry in step. Errors our code
 * throws are never retried here: each step decides what is worth retrying.
 */
export const LAMBDA_SERVICE_ERRORS = [
  'Lambda.ClientExecutionTimeoutException',
  'Lambda.ServiceException',
  'Lambda.AWSLambdaException',
  'Lambda.SdkClientException',
  'Lambda.TooManyRequestsException',
];

/**
 * Seconds a Task waits for its function beyond the function's own timeout before giving up
 * on it (States.Timeout, caught like any failure): a function's timeout ends it, but an
 * invocation that never starts (throttled, stuck) would otherwise hold the run for 24 h.
 */
export const TASK_TIMEOUT_MARGIN_SECONDS = 30;

export interface PipelineDefinitionProps {
  readonly functions: Readonly<Record<PipelineFunctionName, IFunction>>;
  readonly runtimeConfig: RuntimeConfig;
}

export function buildPipelineDefinition(
  scope: Construct,
  props: PipelineDefinitionProps,
): IChainable {
  const { functions } = props;
  const invoke = (
    name: string,
    handler: PipelineFunctionName,
    resultPath?: string,
  ): LambdaInvoke => {
    const task = new LambdaInvoke(scope, name, {
      lambdaFunction: functions[handler],
      // Resource is then the function's ARN and the result is the function's own output,
      // which is also what lets a local run bind each Task to its handler by ARN.
      payloadResponseOnly: true,
      retryOnServiceExceptions: false,
      taskTimeout: Timeout.duration(
        Duration.seconds(
          timeoutSecondsFor(handler, props.runtimeConfig.tables.length) +
            TASK_TIMEOUT_MARGIN_SECONDS,
        ),
      ),
      ...(resultPath === undefined ? {} : { resultPath }),
    });
    task.addRetry({
      errors: LAMBDA_SERVICE_ERRORS,
      interval: Duration.seconds(2),
      backoffRate: 2,
      maxAttempts: 3,
      jitterStrategy: JitterType.FULL,
    });
    return task;
  };

  // Failure path: fail-run reads `$.error` (what was caught) and `$.run` (when there is one),
  // cleans up, notifies, and returns `{ error, cause }` for the Fail state to report.
  const failRun = invoke(STATE.failRun, 'fail-run');
  failRun.next(
    new Fail(scope, STATE.runFailed, {
      errorPath: JsonPath.stringAt('$.error'),
      causePath: JsonPath.stringAt('$.cause'),
    }),
  );
  const catchInto = <T extends LambdaInvoke | MapState>(state: T): T => {
    state.addCatch(failRun, { errors: ['States.ALL'], resultPath: '$.error' });
    return state;
  };

  const loadConfiguration = new Pass(scope, STATE.loadConfiguration, {
    parameters: {
      config: runtimeConfigJson(props.runtimeConfig),
      'request.$': '$',
      context: {
        'stateMachineArn.$': '$$.StateMachine.Id',
        'executionName.$': '$$.Execution.Name',
        'executionArn.$': '$$.Execution.Id',
        'startedAt.$': '$$.Execution.StartTime',
      },
    },
  });
  const prepareRun = catchInto(invoke(STATE.prepareRun, 'prepare-run'));
  const dryRun = catchInto(invoke(STATE.dryRun, 'dry-run'));

  const startUnload = catchInto(invoke(STATE.startUnload, 'start-unload', '$.unload'));
  const waitForUnload = new Wait(scope, STATE.waitForUnload, {
    time: WaitTime.duration(Duration.seconds(UNLOAD_POLL_SECONDS)),
  });
  const checkUnload = catchInto(invoke(STATE.checkUnload, 'check-unload', '$.unload'));

  // The files of a table are imported by as many calls of "Import files into staging" as
  // they need (each imports what fits in its time, lambdas/pipeline/steps/load.ts), so the
  // state and the history grow with the calls, not with the files: an inline Map over the
  // files would put every file into the state (256 KB per state) and 5+ history events per
  // file into the execution (25,000 events), and a Distributed Map's S3 ItemReader does not
  // run in aws-local-stepfunctions (local run, tests).
  // https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html
  const importFiles = invoke(STATE.importFiles, 'import-file', '$.imported');
  const loadTable = invoke(STATE.createStaging, 'create-staging', JsonPath.DISCARD).next(
    importFiles,
  );
  importFiles.next(
    new Choice(scope, STATE.areFilesImported)
      .when(Condition.numberGreaterThan('$.imported.remaining', 0), importFiles)
      .otherwise(invoke(STATE.checkStaging, 'check-staging')),
  );
  const loadEachTable = catchInto(
    new MapState(scope, STATE.loadEachTable, {
      itemsPath: '$.unload.tables',
      maxConcurrency: TABLE_CONCURRENCY,
      itemSelector: { 'run.$': '$.run', 'table.$': '$$.Map.Item.Value' },
      resultPath: '$.loaded',
    }),
  ).itemProcessor(loadTable);

  const checkLocks = catchInto(invoke(STATE.checkLocks, 'check-locks', '$.locks'));
  const waitForBlockers = new Wait(scope, STATE.waitForBlockers, {
    time: WaitTime.secondsPath('$.run.pollIntervalSeconds'),
  });
  const terminateBlockers = catchInto(
    invoke(STATE.terminateBlockers, 'terminate-blockers', '$.terminated'),
  );
  const swapTables = catchInto(invoke(STATE.swapTables, 'swap-tables', '$.swap'));
  const finishRun = catchInto(invoke(STATE.finishRun, 'finish-run'));

  waitForBlockers.next(checkLocks);
  terminateBlockers.next(swapTables);
  swapTables.next(
    new Choice(scope, STATE.didSwapGoThrough)
      .when(
        Condition.booleanEquals('$.swap.swapped', true),
        finishRun.next(new Succeed(scope, STATE.tablesLive)),
      )
      .otherwise(waitForBlockers),
  );
  checkLocks.next(
    new Choice(scope, STATE.isSafeToSwap)
      .when(Condition.stringEquals('$.locks.decision', 'swap'), swapTables)
      .when(Condition.stringEquals('$.locks.decision', 'terminate'), terminateBlockers)
      .otherwise(waitForBlockers),
  );
  waitForUnload.next(checkUnload);
  checkUnload.next(
    new Choice(scope, STATE.hasUnloadFinished)
      .when(Condition.booleanEquals('$.unload.finished', true), loadEachTable)
      .otherwise(waitForUnload),
  );
  loadEachTable.next(checkLocks);
  startUnload.next(waitForUnload);

  // A run refused because another is in progress did nothing and is not a failure: it ends
  // as succeeded with prepare-run's NOT_STARTED summary as its output, without fail-run (which
  // would page and could touch the other run's files).
  const notStarted = new Pass(scope, STATE.sayNotStarted, { outputPath: '$.notStarted' }).next(
    new Succeed(scope, STATE.anotherRunInProgress),
  );
  return loadConfiguration
    .next(prepareRun)
    .next(
      new Choice(scope, STATE.isAnotherRunInProgress)
        .when(Condition.isPresent('$.notStarted'), notStarted)
        .otherwise(
          new Choice(scope, STATE.isDryRun)
            .when(
              Condition.booleanEquals('$.run.dryRun', true),
              dryRun.next(new Succeed(scope, STATE.dryRunDone)),
            )
            .otherwise(startUnload),
        ),
    );
}
