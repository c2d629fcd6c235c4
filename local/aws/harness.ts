/**
 * The AWS contract harness: the state machine `cdk synth` produces, each Task bound to the REAL
 * Lambda handler (lambdas/handlers/<name>.ts, middy and Powertools included) and so to the real
 * AWS adapters, whose SDK clients are answered in-process by the fakes (./fakes) as the calling
 * function's role. It enforces what Step Functions and Lambda enforce around the handlers:
 * the 256 KiB payload per state (States.DataLimitExceeded, which no Catch catches), the
 * 25,000 events of an execution's history, and each function's synthesized timeout.
 */
import { randomUUID } from 'node:crypto';
import {
  BeginTransactionCommand,
  CommitTransactionCommand,
  ExecuteStatementCommand,
  RDSDataClient,
  RollbackTransactionCommand,
} from '@aws-sdk/client-rds-data';
import {
  BatchExecuteStatementCommand,
  CancelStatementCommand,
  DescribeStatementCommand,
  GetStatementResultCommand,
  RedshiftDataClient,
  ExecuteStatementCommand as RedshiftExecuteStatementCommand,
} from '@aws-sdk/client-redshift-data';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  type ExecutionListItem,
  ListExecutionsCommand,
  SFNClient,
} from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import pg from 'pg';
import type { RuntimeConfig } from '../../lambdas/core/config';
import type { LambdaEnvironmentVariable } from '../../lambdas/handlers/environment-variables';
import { type PipelineHandlerName, roleGroupOf, timeoutSecondsFor } from '../../lib/handlers';
import { installAwsS3Shim } from '../emulators/aws-s3-shim';
import {
  type ExecutionEvent,
  type ExecutionOutcome,
  executionArnOf,
  type LocalHandler,
  type RunDefinitionOptions,
  runDefinition,
  synthesizeDefinition,
} from '../run/definition';
import type { Authorize, AwsPrincipal } from './access';
import { RdsDataFake } from './fakes/rds-data';
import { RedshiftDataFake } from './fakes/redshift-data';
import { S3Fake } from './fakes/s3';
import { SnsFake, StepFunctionsFake } from './fakes/sfn-sns';
import { AWS_LIMITS, jsonBytes } from './limits';
import { asPrincipal, callingPrincipal } from './principal';

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';

/** The AWS resources the harness stands for (the names definition.ts's synthesis uses). */
export const HARNESS_RESOURCES = {
  region: REGION,
  account: ACCOUNT,
  bucket: 'sync-run-files',
  auroraClusterArn: `arn:aws:rds:${REGION}:${ACCOUNT}:cluster:local`,
  auroraSecretArn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:local-aurora`,
  auroraDatabase: 'local',
  redshiftClusterIdentifier: 'local',
  redshiftDatabase: 'local',
  redshiftSecretArn: `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:local-redshift`,
  unloadRoleArn: `arn:aws:iam::${ACCOUNT}:role/unload`,
  s3ImportRoleArn: `arn:aws:iam::${ACCOUNT}:role/aurora-s3-import`,
  kmsKeyArn: `arn:aws:kms:${REGION}:${ACCOUNT}:key/00000000-0000-0000-0000-000000000000`,
  alarmTopicArn: `arn:aws:sns:${REGION}:${ACCOUNT}:alarms`,
  stateMachineArn: `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:local`,
} as const;

/**
 * The role a function runs as: roleGroupOf's group (functions touching Redshift statements
 * share one). The IAM evaluator maps these to the synthesized roles' policies.
 */
export function functionRoleArn(handler: PipelineHandlerName): string {
  return `arn:aws:iam::${ACCOUNT}:role/${roleGroupOf(handler)}`;
}

/** The Lambda handlers by name, imported as Lambda loads them: the module's `handler` export. */
const HANDLER_MODULES: Readonly<
  Record<
    PipelineHandlerName,
    () => Promise<{ handler: (event: unknown, context: Context) => Promise<unknown> }>
  >
> = {
  'prepare-run': () => import('../../lambdas/handlers/prepare-run'),
  'dry-run': () => import('../../lambdas/handlers/dry-run'),
  'start-unload': () => import('../../lambdas/handlers/start-unload'),
  'check-unload': () => import('../../lambdas/handlers/check-unload'),
  'create-staging': () => import('../../lambdas/handlers/create-staging'),
  'import-file': () => import('../../lambdas/handlers/import-file'),
  'check-staging': () => import('../../lambdas/handlers/check-staging'),
  'check-locks': () => import('../../lambdas/handlers/check-locks'),
  'terminate-blockers': () => import('../../lambdas/handlers/terminate-blockers'),
  'swap-tables': () => import('../../lambdas/handlers/swap-tables'),
  'finish-run': () => import('../../lambdas/handlers/finish-run'),
  'fail-run': () => import('../../lambdas/handlers/fail-run'),
};

export interface AwsHarnessOptions {
  readonly runtimeConfig: RuntimeConfig;
  /** The PostgreSQL database standing in for Redshift. */
  readonly sourceUrl: string;
  /** Aurora as the secret signs in: the pipeline's non-superuser role. */
  readonly targetUrl: string;
  /** A superuser connection to the same database, only to install the aws_s3 stand-in. */
  readonly adminUrl: string;
  /** The folder holding the bucket. */
  readonly s3Dir: string;
  readonly authorize: Authorize;
  /** The RDS Data API's per-call cut-off (45 s), scaled for tests. */
  readonly rdsCallTimeoutMs?: number;
  /** Milliseconds a function may run instead of its synthesized timeout, by handler. */
  readonly functionTimeoutMs?: Partial<Record<PipelineHandlerName, number>>;
  /** Milliseconds the named Wait states wait (the emulated unload is quick). */
  readonly waitTimeOverrides?: RunDefinitionOptions['waitTimeOverrides'];
}

export interface HarnessRun {
  readonly outcome: ExecutionOutcome;
  /** History events as Step Functions would record them (see countHistoryEvents). */
  readonly historyEvents: number;
  readonly events: ExecutionEvent[];
  /** Every Task's handler invocation, in order of start. */
  readonly invocations: { handler: PipelineHandlerName; role: string }[];
}

/** A limit the service enforces by ending the execution, outside any Catch. */
class ExecutionLimitError extends Error {}

/**
 * The events the real history would hold for one of aws-local-stepfunctions' events. Real
 * history (API_HistoryEvent.html): a Lambda Task is TaskStateEntered, TaskScheduled,
 * TaskStarted, TaskSucceeded|TaskFailed, TaskStateExited; a retry adds TaskScheduled,
 * TaskStarted and the failed attempt's TaskFailed; a Map adds MapStateStarted, per iteration
 * MapIterationStarted and MapIterationSucceeded|Failed, and MapStateSucceeded|Failed; other
 * states are <Type>StateEntered and <Type>StateExited; the execution ExecutionStarted and
 * ExecutionSucceeded|Failed. The local engine reports states entered/exited/failed/retried and
 * Map iterations, so Task and Map events are derived from those; a Catch adds no event of its own.
 */
export function countHistoryEvents(event: ExecutionEvent): number {
  const type = 'state' in event ? event.state.type : undefined;
  switch (event.type) {
    case 'ExecutionStarted':
    case 'ExecutionSucceeded':
    case 'ExecutionFailed':
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed':
      return 1;
    case 'StateEntered':
      return type === 'Task' ? 3 : type === 'Map' ? 2 : 1;
    case 'StateExited':
      return type === 'Task' || type === 'Map' ? 2 : 1;
    case 'StateFailed':
      return type === 'Task' || type === 'Map' ? 1 : 0;
    case 'StateRetried':
      return 3;
    default:
      return 0;
  }
}

export class AwsHarness {
  readonly s3: S3Fake;
  readonly rdsData: RdsDataFake;
  readonly redshiftData: RedshiftDataFake;
  readonly stepFunctions: StepFunctionsFake;
  readonly sns: SnsFake;
  private readonly mocks: { restore(): void }[] = [];
  private readonly savedEnvironment = new Map<string, string | undefined>();

  private constructor(private readonly options: AwsHarnessOptions) {
    const { authorize } = options;
    const r = HARNESS_RESOURCES;
    this.s3 = new S3Fake({ s3Dir: options.s3Dir, buckets: [r.bucket], authorize });
    this.rdsData = new RdsDataFake({
      clusterArn: r.auroraClusterArn,
      secretArn: r.auroraSecretArn,
      database: r.auroraDatabase,
      connectionUrl: options.targetUrl,
      authorize,
      ...(options.rdsCallTimeoutMs ? { callTimeoutMs: options.rdsCallTimeoutMs } : {}),
      // Aurora reads each imported object as its s3Import role; the shim reads the folder
      // itself, so the read is authorized here, per object, before the statement runs.
      beforeStatement: (sql, parameters) => {
        if (!/\baws_s3\.table_import_from_s3\b/.test(sql)) return;
        const bucket = parameters.bucket;
        const key = parameters.key;
        if (typeof bucket === 'string' && typeof key === 'string') {
          this.s3.authorizeRead({ roleArn: r.s3ImportRoleArn }, bucket, key);
        }
      },
    });
    this.redshiftData = new RedshiftDataFake({
      sourceUrl: options.sourceUrl,
      s3: this.s3,
      authorize,
      region: r.region,
      account: r.account,
      target: {
        clusterIdentifier: r.redshiftClusterIdentifier,
        database: r.redshiftDatabase,
        secretArn: r.redshiftSecretArn,
      },
    });
    this.stepFunctions = new StepFunctionsFake(authorize, r.stateMachineArn);
    this.sns = new SnsFake(authorize, [r.alarmTopicArn]);
  }

  /** Installs the aws_s3 stand-in, the SDK mocks and the Lambda environment. */
  static async start(options: AwsHarnessOptions): Promise<AwsHarness> {
    const admin = new pg.Client({ connectionString: options.adminUrl });
    await admin.connect();
    try {
      await installAwsS3Shim(admin, { s3Dir: options.s3Dir });
    } finally {
      await admin.end();
    }
    const harness = new AwsHarness(options);
    harness.installMocks();
    harness.setEnvironment();
    return harness;
  }

  /** Runs the synthesized state machine with `input`, every Task on its real handler. */
  async run(input: unknown, executionName = `contract-${randomUUID()}`): Promise<HarnessRun> {
    const synthesized = synthesizeDefinition(this.options.runtimeConfig);
    const tableCount = this.options.runtimeConfig.tables.length;
    const abort = new AbortController();
    const limit = (error: string, cause: string) => {
      if (!abort.signal.aborted)
        abort.abort(Object.assign(new ExecutionLimitError(cause), { error }));
    };
    const invocations: HarnessRun['invocations'] = [];
    const handlers = Object.fromEntries(
      (Object.keys(HANDLER_MODULES) as PipelineHandlerName[]).map((name) => {
        const local: LocalHandler = async (stateInput) => {
          const role = functionRoleArn(name);
          invocations.push({ handler: name, role });
          const timeoutMs =
            this.options.functionTimeoutMs?.[name] ?? timeoutSecondsFor(name, tableCount) * 1000;
          const output = await this.invoke(name, role, stateInput, timeoutMs);
          const bytes = jsonBytes(output);
          if (bytes > AWS_LIMITS.stepFunctions.maxPayloadBytes) {
            limit(
              'States.DataLimitExceeded',
              `The state/task '${name}' returned a result with a size exceeding the maximum number of bytes service limit (${bytes} > ${AWS_LIMITS.stepFunctions.maxPayloadBytes}).`,
            );
          }
          return output;
        };
        return [name, local];
      }),
    );
    const events: ExecutionEvent[] = [];
    let historyEvents = 0;
    const startDate = new Date();
    const executionArn = executionArnOf(HARNESS_RESOURCES.stateMachineArn, executionName);
    const listed: ExecutionListItem = {
      executionArn,
      stateMachineArn: HARNESS_RESOURCES.stateMachineArn,
      name: executionName,
      status: 'RUNNING',
      startDate,
    };
    this.stepFunctions.executions.unshift(listed);
    let outcome: ExecutionOutcome;
    try {
      outcome = await runDefinition(synthesized, handlers, input, {
        executionName,
        stateMachineArn: HARNESS_RESOURCES.stateMachineArn,
        abortSignal: abort.signal,
        ...(this.options.waitTimeOverrides
          ? { waitTimeOverrides: this.options.waitTimeOverrides }
          : {}),
        onEvent: (event) => {
          events.push(event);
          historyEvents += countHistoryEvents(event);
          if (historyEvents > AWS_LIMITS.stepFunctions.maxHistoryEvents) {
            // The error name the service reports here is not documented; the limit is.
            limit(
              'States.Runtime',
              `The execution history reached ${AWS_LIMITS.stepFunctions.maxHistoryEvents} events, the most a Standard execution may have.`,
            );
          }
          const payload =
            event.type === 'StateEntered'
              ? event.state.input
              : event.type === 'StateExited'
                ? event.state.output
                : undefined;
          if (payload !== undefined && 'state' in event) {
            const bytes = jsonBytes(payload);
            if (bytes > AWS_LIMITS.stepFunctions.maxPayloadBytes) {
              limit(
                'States.DataLimitExceeded',
                `The state '${event.state.name}' has ${event.type === 'StateEntered' ? 'an input' : 'an output'} of ${bytes} bytes, more than the ${AWS_LIMITS.stepFunctions.maxPayloadBytes} allowed.`,
              );
            }
          }
        },
      });
    } catch (error) {
      if (!(error instanceof ExecutionLimitError)) throw error;
      outcome = {
        status: 'FAILED',
        error: (error as ExecutionLimitError & { error: string }).error,
        cause: error.message,
      };
    } finally {
      // An ended execution stays listed and described with its status, as in the service.
      // Stopped (aborted) unless it came to an end of its own.
      listed.status = 'ABORTED';
      listed.stopDate = new Date();
    }
    listed.status = outcome.status;
    return { outcome, historyEvents, events, invocations };
  }

  async close(): Promise<void> {
    for (const mock of this.mocks) mock.restore();
    for (const [name, value] of this.savedEnvironment) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    await Promise.allSettled([this.rdsData.close(), this.redshiftData.close()]);
  }

  /**
   * Invokes a handler as Lambda would: the event and result through JSON, a context carrying
   * the function's timeout, as the function's role. A function still running at its timeout
   * is stopped by Lambda; Step Functions reports that as Lambda.Unknown ("Unhandled errors in
   * Lambda are reported as Lambda.Unknown ... These include out-of-memory errors and function
   * timeouts", https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html).
   * An error the handler throws arrives as Lambda reports it: Error is its errorType, Cause the
   * JSON {errorType, errorMessage, trace}.
   */
  private async invoke(
    name: PipelineHandlerName,
    roleArn: string,
    input: unknown,
    timeoutMs: number,
  ): Promise<unknown> {
    const { handler } = await HANDLER_MODULES[name]();
    const deadline = Date.now() + timeoutMs;
    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName: name,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name}`,
      memoryLimitInMB: '512',
      awsRequestId: randomUUID(),
      logGroupName: `/aws/lambda/${name}`,
      logStreamName: 'contract-harness',
      getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
      done: () => {},
      fail: () => {},
      succeed: () => {},
    } satisfies Context;
    const event = JSON.parse(JSON.stringify(input ?? null));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(
          Object.assign(
            new Error(
              JSON.stringify({
                errorMessage: `${context.awsRequestId} Task timed out after ${(timeoutMs / 1000).toFixed(2)} seconds`,
              }),
            ),
            { name: 'Lambda.Unknown' },
          ),
        );
      }, timeoutMs);
    });
    try {
      const output = await Promise.race([
        asPrincipal({ roleArn }, () => handler(event, context)),
        timedOut,
      ]);
      return JSON.parse(JSON.stringify(output ?? null));
    } catch (error) {
      if ((error as Error).name === 'Lambda.Unknown') throw error;
      const thrown = error instanceof Error ? error : new Error(String(error));
      throw Object.assign(
        new Error(
          JSON.stringify({
            errorType: thrown.name,
            errorMessage: thrown.message,
            trace: (thrown.stack ?? '').split('\n'),
          }),
        ),
        { name: thrown.name },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  private installMocks(): void {
    const caller = (): AwsPrincipal => callingPrincipal();
    const rds = mockClient(RDSDataClient);
    rds
      .on(ExecuteStatementCommand)
      .callsFake((input) => this.rdsData.executeStatement(caller(), input));
    rds
      .on(BeginTransactionCommand)
      .callsFake((input) => this.rdsData.beginTransaction(caller(), input));
    rds
      .on(CommitTransactionCommand)
      .callsFake((input) => this.rdsData.commitTransaction(caller(), input));
    rds
      .on(RollbackTransactionCommand)
      .callsFake((input) => this.rdsData.rollbackTransaction(caller(), input));
    const redshift = mockClient(RedshiftDataClient);
    redshift
      .on(RedshiftExecuteStatementCommand)
      .callsFake((input) => this.redshiftData.executeStatement(caller(), input));
    redshift
      .on(BatchExecuteStatementCommand)
      .callsFake((input) => this.redshiftData.batchExecuteStatement(caller(), input));
    redshift
      .on(DescribeStatementCommand)
      .callsFake((input) => this.redshiftData.describeStatement(caller(), input));
    redshift
      .on(GetStatementResultCommand)
      .callsFake((input) => this.redshiftData.getStatementResult(caller(), input));
    redshift
      .on(CancelStatementCommand)
      .callsFake((input) => this.redshiftData.cancelStatement(caller(), input));
    const s3 = mockClient(S3Client);
    s3.on(GetObjectCommand).callsFake((input) => this.s3.getObject(caller(), input));
    s3.on(HeadObjectCommand).callsFake((input) => this.s3.headObject(caller(), input));
    s3.on(PutObjectCommand).callsFake((input) => this.s3.putObject(caller(), input));
    s3.on(ListObjectsV2Command).callsFake((input) => this.s3.listObjectsV2(caller(), input));
    s3.on(DeleteObjectsCommand).callsFake((input) => this.s3.deleteObjects(caller(), input));
    const sfn = mockClient(SFNClient);
    sfn
      .on(ListExecutionsCommand)
      .callsFake((input) => this.stepFunctions.listExecutions(caller(), input));
    sfn
      .on(DescribeExecutionCommand)
      .callsFake((input) => this.stepFunctions.describeExecution(caller(), input));
    const sns = mockClient(SNSClient);
    sns.on(PublishCommand).callsFake((input) => this.sns.publish(caller(), input));
    this.mocks.push(rds, redshift, s3, sfn, sns);
  }

  /** What the construct sets on every function (lambdas/handlers/environment-variables.ts). */
  private setEnvironment(): void {
    const r = HARNESS_RESOURCES;
    const variables: Partial<Record<LambdaEnvironmentVariable | string, string>> = {
      RUN_BUCKET: r.bucket,
      KMS_KEY_ARN: r.kmsKeyArn,
      UNLOAD_ROLE_ARN: r.unloadRoleArn,
      AURORA_CLUSTER_ARN: r.auroraClusterArn,
      AURORA_SECRET_ARN: r.auroraSecretArn,
      AURORA_DATABASE: r.auroraDatabase,
      REDSHIFT_CLUSTER_IDENTIFIER: r.redshiftClusterIdentifier,
      REDSHIFT_DATABASE: r.redshiftDatabase,
      REDSHIFT_SECRET_ARN: r.redshiftSecretArn,
      ALARM_TOPIC_ARN: r.alarmTopicArn,
      ENVIRONMENT_NAME: 'contract',
      POWERTOOLS_SERVICE_NAME: 'redshift-aurora-sync',
      POWERTOOLS_METRICS_NAMESPACE: 'RedshiftAuroraSync',
      AWS_REGION: r.region,
      // No X-Ray daemon here: tracing off; logs silenced.
      POWERTOOLS_TRACE_ENABLED: 'false',
      POWERTOOLS_LOG_LEVEL: 'SILENT',
    };
    for (const [name, value] of Object.entries(variables)) {
      this.savedEnvironment.set(name, process.env[name]);
      process.env[name] = value;
    }
  }
}
