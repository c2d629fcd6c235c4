/**
 * The AWS contract harness: the state machine `cdk synth` produces, each Task bound to the REAL
 * Lambda handler (lambdas/handlers/<name>.ts, middy and Powertools included) and so to the real
 * AWS adapters, whose SDK clients are answered in-process by the fakes (./fakes) as the calling
 * function's role. Everything comes from the synthesized template: each call is authorized by
 * its IAM policies (./iam), each handler runs as its function's role with its function's
 * environment, and the fakes answer to the names that environment holds. It enforces what
 * Step Functions and Lambda enforce around the handlers:
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
  ListStatementsCommand,
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
import { type PipelineFunctionName, timeoutSecondsFor } from '../../lib/function-access';
import { installAwsS3Shim } from '../../local/emulators/aws-s3-shim';
import {
  type ExecutionEvent,
  type ExecutionOutcome,
  executionArnOf,
  type LocalHandler,
  type RunDefinitionOptions,
  runDefinition,
  type SynthesizedDefinition,
  type SynthesizeOptions,
  synthesizeDefinition,
} from '../../local/run/definition';
import type { AwsPrincipal } from './access';
import { RdsDataFake } from './fakes/rds-data';
import { RedshiftDataFake, type RedshiftDataFakeOptions } from './fakes/redshift-data';
import { S3Fake } from './fakes/s3';
import { SnsFake, StepFunctionsFake } from './fakes/sfn-sns';
import { authorizerFromPolicies } from './iam/authorizer';
import { type LambdaFunction, policiesFromTemplate, type TemplatePolicies } from './iam/template';
import { AWS_LIMITS, jsonBytes } from './limits';
import { asPrincipal, callingPrincipal } from './principal';
import {
  countHistoryEvents,
  countStateTransitions,
  countsSince,
  functionMemoryMb,
  type ServiceStubs,
  sdkCallCounts,
} from './usage';

/** The stack as synthesized, and its policies with every intrinsic resolved. */
export interface HarnessStack {
  readonly synthesized: SynthesizedDefinition;
  readonly policies: TemplatePolicies;
}

/** Synthesizes the stack for `runtimeConfig` as local/run/definition.ts does, with its policies. */
export function synthesizeStack(
  runtimeConfig: RuntimeConfig,
  options: SynthesizeOptions = {},
): HarnessStack {
  const synthesized = synthesizeDefinition(runtimeConfig, options);
  return {
    synthesized,
    policies: policiesFromTemplate(synthesized.template, synthesized.environment),
  };
}

/** The AWS resources the stack names, as the functions and roles see them. */
export interface HarnessResources {
  readonly account: string;
  readonly region: string;
  readonly partition: string;
  /** What every pipeline function's environment holds, resolved. */
  readonly environment: Readonly<Record<string, string>>;
  readonly bucket: string;
  readonly alarmTopicArn: string;
  readonly stateMachineArn: string;
  /** The role Aurora reads run files as (feature s3Import): the one trusting rds.amazonaws.com. */
  readonly s3ImportRoleArn: string;
  readonly aurora: {
    readonly clusterArn: string;
    readonly secretArn: string;
    readonly database: string;
  };
  readonly redshift: RedshiftDataFakeOptions['target'];
}

/**
 * Everything from the template: the functions' environment (the same on every function, so
 * it is set once for the process), the state machine's ARN from its name, Aurora's s3Import
 * role from its trust policy.
 */
export function resourcesOf(stack: HarnessStack): HarnessResources {
  const { synthesized, policies } = stack;
  const { account, region, partition } = synthesized.environment;
  const environments = Object.entries(synthesized.functionLogicalIds).map(
    ([handler, logicalId]) => {
      const fn = policies.functions[logicalId];
      if (!fn) throw new Error(`the template has no function ${logicalId} for ${handler}`);
      return [handler, fn.environment] as const;
    },
  );
  const [first] = environments;
  if (!first) throw new Error('the template has no pipeline function');
  const environment = first[1];
  for (const [handler, variables] of environments) {
    if (JSON.stringify(variables) !== JSON.stringify(environment)) {
      throw new Error(
        `${handler}'s environment differs from ${first[0]}'s; the harness sets one environment for all functions, so set it per invocation to support this`,
      );
    }
  }
  const variable = (name: LambdaEnvironmentVariable): string => {
    const value = environment[name];
    if (value === undefined) throw new Error(`the pipeline functions have no ${name} variable`);
    return value;
  };
  const optional = (name: LambdaEnvironmentVariable) => environment[name];
  const resources = Object.entries(synthesized.template.Resources);
  const stateMachines = resources.filter(
    ([, resource]) => resource.Type === 'AWS::StepFunctions::StateMachine',
  );
  const stateMachineName = stateMachines[0]?.[1].Properties.StateMachineName;
  if (stateMachines.length !== 1 || typeof stateMachineName !== 'string') {
    throw new Error('expected one state machine with a fixed StateMachineName in the template');
  }
  const importRoles = resources.filter(
    ([, resource]) =>
      resource.Type === 'AWS::IAM::Role' &&
      JSON.stringify(resource.Properties.AssumeRolePolicyDocument).includes(
        '"Service":"rds.amazonaws.com"',
      ),
  );
  const importRole = Object.values(policies.roles).find(
    (role) => importRoles.length === 1 && role.logicalId === importRoles[0]![0],
  );
  if (!importRole) {
    throw new Error(
      `expected one role trusting rds.amazonaws.com (Aurora's s3Import role), found ${importRoles.length}`,
    );
  }
  const workgroupName = optional('REDSHIFT_WORKGROUP_NAME');
  const redshiftSecretArn = optional('REDSHIFT_SECRET_ARN');
  const redshiftDbUser = optional('REDSHIFT_DB_USER');
  const database = variable('REDSHIFT_DATABASE');
  return {
    account,
    region,
    partition,
    environment,
    bucket: variable('RUN_BUCKET'),
    alarmTopicArn: variable('ALARM_TOPIC_ARN'),
    stateMachineArn: `arn:${partition}:states:${region}:${account}:stateMachine:${stateMachineName}`,
    s3ImportRoleArn: importRole.arn,
    aurora: {
      clusterArn: variable('AURORA_CLUSTER_ARN'),
      secretArn: variable('AURORA_SECRET_ARN'),
      database: variable('AURORA_DATABASE'),
    },
    redshift: {
      ...(workgroupName
        ? { workgroupName }
        : { clusterIdentifier: variable('REDSHIFT_CLUSTER_IDENTIFIER') }),
      database,
      ...(redshiftSecretArn ? { secretArn: redshiftSecretArn } : {}),
      ...(redshiftDbUser ? { dbUser: redshiftDbUser } : {}),
    } as RedshiftDataFakeOptions['target'],
  };
}

/** The Lambda handlers by name, imported as Lambda loads them: the module's `handler` export. */
const HANDLER_MODULES: Readonly<
  Record<
    PipelineFunctionName,
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
  /**
   * The stack whose policies authorize every call and whose names the fakes answer to;
   * default synthesizeStack(runtimeConfig). A test may change its policies to prove a defect.
   * The handler modules keep what they built at their first invocation in this process (the
   * ports over the environment, lambdas/handlers/lambda.ts), as a warm container does: before
   * starting a harness over a stack whose environment differs, load them afresh
   * (vi.resetModules()).
   */
  readonly stack?: HarnessStack;
  /** The RDS Data API's per-call cut-off (45 s), scaled for tests. */
  readonly rdsCallTimeoutMs?: number;
  /** Milliseconds a function may run instead of its synthesized timeout, by handler. */
  readonly functionTimeoutMs?: Partial<Record<PipelineFunctionName, number>>;
  /**
   * Runs before each handler invocation, with the state it is given: lets a test put in place
   * what an earlier attempt of the step would have left (a retried Lambda).
   */
  readonly beforeInvoke?: (handler: PipelineFunctionName, input: unknown) => Promise<void>;
  /** Slices of the emulated Redshift cluster: UNLOAD writes (at least) a file per slice. Default 2. */
  readonly redshiftSlices?: number;
  /** Milliseconds the named Wait states wait (the emulated unload is quick). */
  readonly waitTimeOverrides?: RunDefinitionOptions['waitTimeOverrides'];
}

export interface HarnessRun {
  readonly outcome: ExecutionOutcome;
  /** History events as Step Functions would record them (see countHistoryEvents). */
  readonly historyEvents: number;
  readonly events: ExecutionEvent[];
  /**
   * Every Task's handler invocation, in order of start: its function's role and MemorySize,
   * and how long the handler ran here (wall clock, in process, against the local fakes).
   */
  readonly invocations: {
    handler: PipelineFunctionName;
    role: string;
    memoryMb: number;
    durationMs?: number;
  }[];
  /** State transitions as Standard workflows bill them (see countStateTransitions). */
  readonly stateTransitions: number;
  /** The run's AWS SDK calls by `service:Operation`, e.g. `rds-data:ExecuteStatement`. */
  readonly sdkCalls: Readonly<Record<string, number>>;
  /** Requests S3 authorized during the run by action, callers' and services' alike (S3Fake.requests). */
  readonly s3Requests: Readonly<Record<string, number>>;
  /** The largest state input or output of the run, in bytes (the limit is 256 KiB). */
  readonly largestStateBytes: number;
}

/** A limit the service enforces by ending the execution, outside any Catch. */
class ExecutionLimitError extends Error {}

export class AwsHarness {
  readonly s3: S3Fake;
  readonly rdsData: RdsDataFake;
  readonly redshiftData: RedshiftDataFake;
  readonly stepFunctions: StepFunctionsFake;
  readonly sns: SnsFake;
  readonly stack: HarnessStack;
  readonly resources: HarnessResources;
  private readonly mocks: ServiceStubs[number][] = [];
  private readonly savedEnvironment = new Map<string, string | undefined>();

  private constructor(private readonly options: AwsHarnessOptions) {
    this.stack = options.stack ?? synthesizeStack(options.runtimeConfig);
    const r = resourcesOf(this.stack);
    this.resources = r;
    const authorize = authorizerFromPolicies(this.stack.policies);
    this.s3 = new S3Fake({
      s3Dir: options.s3Dir,
      buckets: [r.bucket],
      authorize,
      bucketKeys: this.stack.policies.bucketKeys,
      region: r.region,
    });
    this.rdsData = new RdsDataFake({
      ...r.aurora,
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
      target: r.redshift,
      ...(options.redshiftSlices ? { slices: options.redshiftSlices } : {}),
    });
    this.stepFunctions = new StepFunctionsFake(authorize, r.stateMachineArn);
    this.sns = new SnsFake(authorize, [r.alarmTopicArn], this.stack.policies.topicKeys);
  }

  /** The role `handler`'s function runs as in the stack. */
  roleOf(handler: PipelineFunctionName): string {
    const { synthesized, policies } = this.stack;
    return policies.functions[synthesized.functionLogicalIds[handler]]!.roleArn;
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
    const { synthesized, policies } = this.stack;
    const tableCount = this.options.runtimeConfig.tables.length;
    const abort = new AbortController();
    const limit = (error: string, cause: string) => {
      if (!abort.signal.aborted)
        abort.abort(Object.assign(new ExecutionLimitError(cause), { error }));
    };
    const invocations: HarnessRun['invocations'] = [];
    const handlers = Object.fromEntries(
      (Object.keys(HANDLER_MODULES) as PipelineFunctionName[]).map((name) => {
        const local: LocalHandler = async (stateInput) => {
          const fn = policies.functions[synthesized.functionLogicalIds[name]]!;
          const invocation: HarnessRun['invocations'][number] = {
            handler: name,
            role: fn.roleArn,
            memoryMb: functionMemoryMb(synthesized, name),
          };
          invocations.push(invocation);
          await this.options.beforeInvoke?.(name, stateInput);
          const timeoutMs =
            this.options.functionTimeoutMs?.[name] ?? timeoutSecondsFor(name, tableCount) * 1000;
          const started = performance.now();
          const output = await this.invoke(name, fn, stateInput, timeoutMs).finally(() => {
            invocation.durationMs = performance.now() - started;
          });
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
    let stateTransitions = 0;
    let largestStateBytes = 0;
    const sdkCallsBefore = sdkCallCounts(this.mocks);
    const s3RequestsBefore = new Map(this.s3.requests);
    const startDate = new Date();
    const { stateMachineArn } = this.resources;
    const executionArn = executionArnOf(stateMachineArn, executionName);
    const listed: ExecutionListItem = {
      executionArn,
      stateMachineArn,
      name: executionName,
      status: 'RUNNING',
      startDate,
    };
    this.stepFunctions.executions.unshift(listed);
    let outcome: ExecutionOutcome;
    try {
      outcome = await runDefinition(synthesized, handlers, input, {
        executionName,
        stateMachineArn,
        abortSignal: abort.signal,
        ...(this.options.waitTimeOverrides
          ? { waitTimeOverrides: this.options.waitTimeOverrides }
          : {}),
        onEvent: (event) => {
          events.push(event);
          historyEvents += countHistoryEvents(event);
          stateTransitions += countStateTransitions(event);
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
            largestStateBytes = Math.max(largestStateBytes, bytes);
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
    return {
      outcome,
      historyEvents,
      events,
      invocations,
      largestStateBytes,
      stateTransitions,
      sdkCalls: countsSince(sdkCallsBefore, sdkCallCounts(this.mocks)),
      s3Requests: countsSince(s3RequestsBefore, this.s3.requests),
    };
  }

  async close(): Promise<void> {
    for (const { stub } of this.mocks) stub.restore();
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
    name: PipelineFunctionName,
    fn: LambdaFunction,
    input: unknown,
    timeoutMs: number,
  ): Promise<unknown> {
    const { handler } = await HANDLER_MODULES[name]();
    const deadline = Date.now() + timeoutMs;
    const context = {
      callbackWaitsForEmptyEventLoop: true,
      functionName: fn.arn.slice(fn.arn.lastIndexOf(':') + 1),
      functionVersion: '$LATEST',
      invokedFunctionArn: fn.arn,
      memoryLimitInMB: String(functionMemoryMb(this.stack.synthesized, name)),
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
        // Lambda names the role session after the function (assumed-role/<role>/<function> in
        // CloudTrail; not found word for word in the Lambda guide).
        asPrincipal({ roleArn: fn.roleArn, sessionName: context.functionName }, () =>
          handler(event, context),
        ),
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
    redshift
      .on(ListStatementsCommand)
      .callsFake((input) => this.redshiftData.listStatements(caller(), input));
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
    this.mocks.push(
      { service: 'rds-data', stub: rds },
      { service: 'redshift-data', stub: redshift },
      { service: 's3', stub: s3 },
      { service: 'states', stub: sfn },
      { service: 'sns', stub: sns },
    );
  }

  /**
   * The environment the template gives every function (resourcesOf checked it is one), plus
   * what Lambda itself sets (AWS_REGION) and what the harness turns off (tracing, logs).
   */
  private setEnvironment(): void {
    const variables: Record<string, string> = {
      ...this.resources.environment,
      AWS_REGION: this.resources.region,
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
