/**
 * The whole pipeline as one reusable construct: the run-files bucket and its key, the roles
 * Redshift (UNLOAD) and Aurora (aws_s3 import) assume, one Lambda per step with only the
 * access that step needs, the state machine, its schedule, and the alarms that page someone.
 *
 * The construct owns neither database: Redshift and Aurora are referenced by identifier and
 * ARN, and the roles they must assume are printed as outputs with the command that attaches
 * them.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArnFormat, CfnOutput, Duration, Stack, TimeZone, Validations } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import {
  ArnPrincipal,
  CompositePrincipal,
  type IRole,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { BlockPublicAccess, Bucket, BucketEncryption } from 'aws-cdk-lib/aws-s3';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { StepFunctionsStartExecution } from 'aws-cdk-lib/aws-scheduler-targets';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import {
  DefinitionBody,
  LogLevel,
  StateMachine,
  StateMachineType,
} from 'aws-cdk-lib/aws-stepfunctions';
import { Construct, type IConstruct } from 'constructs';
import type { AwsSettings, RuntimeConfig } from '../lambdas/core/config';
import {
  type LambdaEnvironmentVariable,
  METRICS_NAMESPACE,
  SERVICE_NAME,
} from '../lambdas/handlers/environment-variables';
import { RUNS_PREFIX } from '../lambdas/pipeline/run-files';
import {
  HANDLER_ACCESS,
  PIPELINE_HANDLERS,
  type PipelineHandlerName,
  REDSHIFT_STATEMENTS_ROLE,
  roleGroupOf,
  timeoutSecondsFor,
} from './handlers';
import { buildPipelineDefinition } from './pipeline-definition';
import { checkScheduleAgainstDaylightSaving } from './schedule-daylight-saving';

/** Where run files live in the bucket; the lifecycle rule and every grant are scoped to it. */
/** The repository root: handler entries and the lock file are found from here. */
const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Lets ESM bundles load CommonJS dependencies that call require(). */
const ESM_REQUIRE_BANNER =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

export interface RedshiftAuroraSyncProps {
  /** The environment's name (its config file), e.g. `prod`; in resource names, logs and the run records. */
  readonly environmentName: string;
  /** Tables, lock, unload and retention settings; embedded in the state machine definition. */
  readonly runtimeConfig: RuntimeConfig;
  /** Redshift, Aurora, schedule and alarm settings. */
  readonly aws: Omit<AwsSettings, 'account' | 'region'>;
  /**
   * The state machine's name. It is fixed (not generated) so that prepare-run may list its
   * executions by ARN without a circular reference.
   * @default `redshift-aurora-sync-<environmentName>`
   */
  readonly stateMachineName?: string;
  /**
   * How long the functions' and the state machine's logs are kept.
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;
  /**
   * Memory of every function, in MB. The steps mostly wait on the Data APIs; more memory also
   * means more CPU for parsing large manifests and results.
   * @default 512
   */
  readonly memorySizeMb?: number;
  /**
   * Where the handler files are (`<dir>/<name>.ts`, each exporting `handler`).
   * @default `lambdas/handlers` in this repository
   */
  readonly handlersDirectory?: string;
}

/** How every pipeline Lambda is bundled (esbuild); exported so a test can bundle one the same way. */
export const LAMBDA_BUNDLING = {
  format: OutputFormat.ESM,
  minify: true,
  // Error classes name themselves (SyncError sets name from the class), and Step
  // Functions shows that name as the error type: minified names would turn
  // LockWaitTimeoutError into "X".
  keepNames: true,
  sourceMap: true,
  mainFields: ['module', 'main'],
  banner: ESM_REQUIRE_BANNER,
  // Bundle the AWS SDK too: the functions run the SDK version the tests ran, not
  // whichever the runtime happens to ship.
  externalModules: [],
} as const satisfies BundlingOptions;

/** The state machine's name when `stateMachineName` is not given; `npm run trigger` finds it by this. */
export function stateMachineNameFor(environmentName: string): string {
  return `redshift-aurora-sync-${environmentName}`;
}

export class RedshiftAuroraSync extends Construct {
  readonly key: Key;
  readonly bucket: Bucket;
  /** The role UNLOAD runs as: created here unless `aws.unloadRoleArn` names one. */
  readonly unloadRole: IRole;
  /** The role to attach to the Aurora cluster for feature s3Import. */
  readonly auroraImportRole: Role;
  readonly topic: Topic;
  readonly functions: Readonly<Record<PipelineHandlerName, NodejsFunction>>;
  readonly stateMachine: StateMachine;
  readonly schedule: Schedule;
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: RedshiftAuroraSyncProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { aws } = props;
    const stateMachineName = props.stateMachineName ?? stateMachineNameFor(props.environmentName);
    const logRetention = props.logRetention ?? RetentionDays.THREE_MONTHS;

    this.key = new Key(this, 'Key', {
      description: `redshift-aurora-sync ${props.environmentName}: run files and alarm topic`,
      enableKeyRotation: true,
    });
    // CloudWatch alarms publish to the encrypted topic; SNS needs the key on their behalf.
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: ['*'],
      }),
    );

    this.bucket = this.createBucket(props.runtimeConfig.retention.runFilesDays);
    const runFiles = this.bucket.arnForObjects(`${RUNS_PREFIX}*`);

    if (aws.unloadRoleArn) {
      this.unloadRole = Role.fromRoleArn(this, 'UnloadRole', aws.unloadRoleArn, { mutable: false });
      this.grantImportedUnloadRole(aws.unloadRoleArn, runFiles);
    } else {
      this.unloadRole = this.createUnloadRole(runFiles, aws);
    }
    this.auroraImportRole = this.createAuroraImportRole(runFiles, aws);

    this.topic = new Topic(this, 'AlarmTopic', {
      displayName: `redshift-aurora-sync ${props.environmentName}`,
      masterKey: this.key,
      enforceSSL: true,
    });
    if (aws.alarmEmail) this.topic.addSubscription(new EmailSubscription(aws.alarmEmail));

    const stateMachineArn = stack.formatArn({
      service: 'states',
      resource: 'stateMachine',
      resourceName: stateMachineName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    const environment = this.lambdaEnvironment(props.environmentName, aws);
    const functions = {} as Record<PipelineHandlerName, NodejsFunction>;
    const roles = new Map<string, { role: Role; wildcards: WildcardResource[] }>();
    for (const name of PIPELINE_HANDLERS) {
      const group = roleGroupOf(name);
      let shared = roles.get(group);
      if (!shared) {
        shared = { role: this.createFunctionRole(group), wildcards: [] };
        roles.set(group, shared);
      }
      functions[name] = this.createFunction(name, {
        role: shared.role,
        environment,
        logRetention,
        memorySizeMb: props.memorySizeMb ?? 512,
        timeoutSeconds: timeoutSecondsFor(name, props.runtimeConfig.tables.length),
        handlersDirectory: props.handlersDirectory ?? join(PROJECT_ROOT, 'lambdas', 'handlers'),
      });
      shared.wildcards.push(
        ...this.grantStepAccess(name, shared.role, { aws, runFiles, stateMachineArn }),
      );
    }
    for (const { role, wildcards } of roles.values()) acknowledgeWildcardResources(role, wildcards);
    this.functions = functions;

    const stateMachineLogs = new LogGroup(this, 'StateMachineLogs', { retention: logRetention });
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      stateMachineName,
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(
        buildPipelineDefinition(this, { functions, runtimeConfig: props.runtimeConfig }),
      ),
      timeout: Duration.hours(24),
      tracingEnabled: true,
      // Every event, but without inputs and outputs: those carry table names, blockers'
      // queries and user names, which do not belong in a log kept for months.
      logs: { destination: stateMachineLogs, level: LogLevel.ALL, includeExecutionData: false },
    });
    acknowledgeWildcardResources(this.stateMachine.role, [
      ...PIPELINE_HANDLERS.map((name) => ({
        resource: `${functions[name].functionArn}:*`,
        reason:
          "Each Lambda task may invoke its function by version or alias; the grant names the pipeline's own functions.",
      })),
      {
        resource: '*',
        reason:
          'CloudWatch Logs delivery (logs:CreateLogDelivery and related) and X-Ray tracing support no resource-level permissions.',
      },
    ]);

    checkScheduleAgainstDaylightSaving(aws.schedule.expression, aws.schedule.timeZone);
    this.schedule = new Schedule(this, 'Schedule', {
      description: `Starts the redshift-aurora-sync ${props.environmentName} run`,
      schedule: ScheduleExpression.expression(
        aws.schedule.expression,
        TimeZone.of(aws.schedule.timeZone),
      ),
      target: new StepFunctionsStartExecution(this.stateMachine, {
        input: ScheduleTargetInput.fromObject({}),
      }),
      enabled: aws.schedule.enabled,
    });

    this.createAlarms(aws.schedule.enabled);
    this.dashboard = this.createDashboard(props.environmentName);

    new CfnOutput(this, 'AuroraImportRoleArn', {
      value: this.auroraImportRole.roleArn,
      description: `Attach to the Aurora cluster for aws_s3 imports: aws rds add-role-to-db-cluster --db-cluster-identifier ${clusterIdentifierOf(aws.aurora.clusterArn)} --feature-name s3Import --role-arn <this value>`,
    });
    if (!aws.unloadRoleArn) {
      new CfnOutput(this, 'UnloadRoleArn', {
        value: this.unloadRole.roleArn,
        description: `Attach to Redshift so UNLOAD can write the run files: ${
          'workgroupName' in aws.redshift
            ? 'aws redshift-serverless update-namespace --namespace-name <namespace> --iam-roles <existing roles> <this value>'
            : `aws redshift modify-cluster-iam-roles --cluster-identifier ${aws.redshift.clusterIdentifier} --add-iam-roles <this value>`
        }; or set aws.unloadRoleArn to a role already attached.`,
      });
    }
    new CfnOutput(this, 'StateMachineArn', {
      value: this.stateMachine.stateMachineArn,
      description: 'Start a run by hand: npm run trigger -- --env <environment>',
    });
    new CfnOutput(this, 'RunBucketName', { value: this.bucket.bucketName });
  }

  private createBucket(runFilesDays: number): Bucket {
    const accessLogs = new Bucket(this, 'AccessLogs', {
      // S3 delivers server access logs only to buckets encrypted with S3-managed keys.
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      lifecycleRules: [{ expiration: Duration.days(365) }],
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        "This bucket receives the run bucket's server access logs; logging it to itself would log its own log deliveries.",
    });
    return new Bucket(this, 'RunBucket', {
      encryption: BucketEncryption.KMS,
      encryptionKey: this.key,
      bucketKeyEnabled: true,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      versioned: false,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'run-bucket/',
      lifecycleRules: [
        // Runs delete their own files; this catches what an interrupted run left.
        { prefix: RUNS_PREFIX, expiration: Duration.days(runFilesDays) },
        { abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
    });
  }

  private createUnloadRole(runFiles: string, aws: RedshiftAuroraSyncProps['aws']): Role {
    const role = new Role(this, 'UnloadRole', {
      // Redshift Serverless assumes roles as redshift-serverless.amazonaws.com too.
      assumedBy:
        'workgroupName' in aws.redshift
          ? new CompositePrincipal(
              new ServicePrincipal('redshift.amazonaws.com'),
              new ServicePrincipal('redshift-serverless.amazonaws.com'),
            )
          : new ServicePrincipal('redshift.amazonaws.com'),
      description: `Redshift ${describeRedshift(aws)} assumes this role to UNLOAD into the run bucket`,
    });
    role.addToPolicy(new PolicyStatement({ actions: ['s3:PutObject'], resources: [runFiles] }));
    role.addToPolicy(
      new PolicyStatement({
        actions: ['s3:GetBucketLocation', 's3:ListBucket'],
        resources: [this.bucket.bucketArn],
      }),
    );
    role.addToPolicy(
      new PolicyStatement({
        // Decrypt too: files over the part size are written in parts, and completing an
        // SSE-KMS multipart upload decrypts the data key.
        actions: ['kms:GenerateDataKey', 'kms:Encrypt', 'kms:Decrypt'],
        resources: [this.key.keyArn],
      }),
    );
    acknowledgeWildcardResources(role, [
      {
        resource: runFiles,
        reason:
          'UNLOAD writes files whose names Redshift chooses under a per-run prefix, so the grant covers the objects under runs/ of this bucket only.',
      },
    ]);
    return role;
  }

  /**
   * An imported UNLOAD role (aws.unloadRoleArn) gets no identity policy from this stack, and
   * the bucket and key are new, so nothing else names it: the bucket policy and the key policy
   * grant it what UNLOAD needs, the same as the role createUnloadRole makes
   * (https://docs.aws.amazon.com/redshift/latest/mgmt/copy-unload-iam-role.html). Within one
   * account an allow in the bucket policy suffices for S3, and a key policy statement naming
   * the role suffices for KMS; a role in another account also needs the same in its own
   * identity policy (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html,
   * https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html).
   */
  private grantImportedUnloadRole(roleArn: string, runFiles: string): void {
    const principal = new ArnPrincipal(roleArn);
    this.bucket.addToResourcePolicy(
      new PolicyStatement({
        principals: [principal],
        actions: ['s3:PutObject'],
        resources: [runFiles],
      }),
    );
    this.bucket.addToResourcePolicy(
      new PolicyStatement({
        principals: [principal],
        actions: ['s3:GetBucketLocation', 's3:ListBucket'],
        resources: [this.bucket.bucketArn],
      }),
    );
    // In a key policy, "*" is the key itself. Decrypt as for the created role: completing
    // an SSE-KMS multipart upload decrypts the data key.
    this.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [principal],
        actions: ['kms:GenerateDataKey', 'kms:Encrypt', 'kms:Decrypt'],
        resources: ['*'],
      }),
    );
  }

  private createAuroraImportRole(runFiles: string, aws: RedshiftAuroraSyncProps['aws']): Role {
    const role = new Role(this, 'AuroraImportRole', {
      assumedBy: new ServicePrincipal('rds.amazonaws.com'),
      description: `Aurora ${clusterIdentifierOf(aws.aurora.clusterArn)} assumes this role (feature s3Import) to read UNLOAD files`,
    });
    role.addToPolicy(new PolicyStatement({ actions: ['s3:GetObject'], resources: [runFiles] }));
    role.addToPolicy(
      new PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    );
    role.addToPolicy(
      new PolicyStatement({ actions: ['kms:Decrypt'], resources: [this.key.keyArn] }),
    );
    acknowledgeWildcardResources(role, [
      {
        resource: runFiles,
        reason:
          'aws_s3.table_import_from_s3 reads files whose names Redshift chose, so the grant covers the objects under runs/ of this bucket only.',
      },
    ]);
    return role;
  }

  private lambdaEnvironment(
    environmentName: string,
    aws: RedshiftAuroraSyncProps['aws'],
  ): Partial<Record<LambdaEnvironmentVariable, string>> {
    const redshift = aws.redshift;
    return {
      RUN_BUCKET: this.bucket.bucketName,
      KMS_KEY_ARN: this.key.keyArn,
      UNLOAD_ROLE_ARN: this.unloadRole.roleArn,
      AURORA_CLUSTER_ARN: aws.aurora.clusterArn,
      AURORA_SECRET_ARN: aws.aurora.secretArn,
      AURORA_DATABASE: aws.aurora.database,
      ...('workgroupName' in redshift
        ? { REDSHIFT_WORKGROUP_NAME: redshift.workgroupName }
        : { REDSHIFT_CLUSTER_IDENTIFIER: redshift.clusterIdentifier }),
      REDSHIFT_DATABASE: redshift.database,
      ...('secretArn' in redshift && redshift.secretArn
        ? { REDSHIFT_SECRET_ARN: redshift.secretArn }
        : {}),
      ...('dbUser' in redshift ? { REDSHIFT_DB_USER: redshift.dbUser } : {}),
      ALARM_TOPIC_ARN: this.topic.topicArn,
      ENVIRONMENT_NAME: environmentName,
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    };
  }

  private createFunction(
    name: PipelineHandlerName,
    options: {
      readonly role: Role;
      readonly environment: Partial<Record<LambdaEnvironmentVariable, string>>;
      readonly logRetention: RetentionDays;
      readonly memorySizeMb: number;
      readonly timeoutSeconds: number;
      readonly handlersDirectory: string;
    },
  ): NodejsFunction {
    const id = pascalCase(name);
    const logGroup = new LogGroup(this, `${id}Logs`, { retention: options.logRetention });
    const { role } = options;
    role.addToPolicy(
      new PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    const fn = new NodejsFunction(this, id, {
      entry: join(options.handlersDirectory, `${name}.ts`),
      handler: 'handler',
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      projectRoot: PROJECT_ROOT,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: options.memorySizeMb,
      timeout: Duration.seconds(options.timeoutSeconds),
      tracing: Tracing.ACTIVE,
      role,
      logGroup,
      environment: {
        ...(options.environment as Record<string, string>),
        // Stack traces point into the TypeScript sources through the bundled source maps.
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: LAMBDA_BUNDLING,
    });
    return fn;
  }

  /**
   * A role per function, or per group of functions that must share one (roleGroupOf), instead
   * of Lambda's default role, which carries the managed AWSLambdaBasicExecutionRole policy
   * (logs for every log group of the account).
   */
  private createFunctionRole(group: string): Role {
    const shared = group === REDSHIFT_STATEMENTS_ROLE;
    return new Role(this, `${pascalCase(group)}Role`, {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: shared
        ? 'The redshift-aurora-sync steps that submit and poll Redshift statements: the Data API answers only the role that submitted a statement'
        : `The ${group} step of redshift-aurora-sync`,
    });
  }

  /** Grants the step's access (HANDLER_ACCESS) to its role; returns the wildcards to acknowledge. */
  private grantStepAccess(
    name: PipelineHandlerName,
    role: Role,
    context: {
      readonly aws: RedshiftAuroraSyncProps['aws'];
      readonly runFiles: string;
      readonly stateMachineArn: string;
    },
  ): WildcardResource[] {
    const access = HANDLER_ACCESS[name];
    const { aws, runFiles } = context;
    const grant = (actions: string[], resources: string[]) =>
      role.addToPolicy(new PolicyStatement({ actions, resources }));
    const wildcards: WildcardResource[] = [
      {
        resource: '*',
        reason:
          'X-Ray PutTraceSegments and PutTelemetryRecords (tracing) support no resource-level permissions.',
      },
    ];

    if (access.aurora) {
      grant(
        [
          'rds-data:ExecuteStatement',
          'rds-data:BeginTransaction',
          'rds-data:CommitTransaction',
          'rds-data:RollbackTransaction',
        ],
        [aws.aurora.clusterArn],
      );
      grant(['secretsmanager:GetSecretValue'], [aws.aurora.secretArn]);
    }
    if (access.redshift !== 'none') {
      grant(['redshift-data:DescribeStatement', 'redshift-data:GetStatementResult'], ['*']);
      wildcards.push({
        resource: '*',
        reason:
          'redshift-data:DescribeStatement and GetStatementResult support no resource-level permissions; the Data API answers them only for statements this role submitted.',
      });
    }
    if (access.redshift === 'submit') {
      const redshift = this.redshiftGrants(aws);
      grant(
        ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
        [redshift.target],
      );
      grant(redshift.credentials.actions, redshift.credentials.resources);
      if (redshift.wildcardReason) {
        wildcards.push({ resource: redshift.target, reason: redshift.wildcardReason });
      }
    }
    if (access.readsRunFiles) {
      grant(['s3:GetObject'], [runFiles]);
      grant(['kms:Decrypt'], [this.key.keyArn]);
    }
    if (access.writesRunFiles) {
      grant(['s3:PutObject'], [runFiles]);
      grant(['kms:GenerateDataKey'], [this.key.keyArn]);
    }
    if (access.deletesRunFiles) {
      grant(['s3:DeleteObject'], [runFiles]);
      // Listing finds what to delete; the condition keeps it to the runs/ prefix.
      role.addToPolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [this.bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${RUNS_PREFIX}*`] } },
        }),
      );
    }
    if (access.readsRunFiles || access.writesRunFiles || access.deletesRunFiles) {
      wildcards.push({
        resource: runFiles,
        reason:
          'Run files have per-run names chosen at run time, so object access covers runs/* of this bucket only.',
      });
    }
    if (access.listsExecutions) {
      grant(['states:ListExecutions'], [context.stateMachineArn]);
    }
    if (access.notifies) {
      // Written out rather than topic.grantPublish(), which grants kms:GenerateDataKey*.
      grant(['sns:Publish'], [this.topic.topicArn]);
      grant(['kms:GenerateDataKey', 'kms:Decrypt'], [this.key.keyArn]);
    }
    return wildcards;
  }

  /** What start-unload needs on Redshift: where statements go and how it signs in. */
  private redshiftGrants(aws: RedshiftAuroraSyncProps['aws']): {
    readonly target: string;
    readonly credentials: { readonly actions: string[]; readonly resources: string[] };
    readonly wildcardReason?: string;
  } {
    const stack = Stack.of(this);
    const redshift = aws.redshift;
    if ('workgroupName' in redshift) {
      // IAM names a workgroup by its id, not its name; without the id, every workgroup of
      // the account in this region.
      const target = stack.formatArn({
        service: 'redshift-serverless',
        resource: 'workgroup',
        resourceName: redshift.workgroupId ?? '*',
        arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
      });
      return {
        target,
        credentials: redshift.secretArn
          ? { actions: ['secretsmanager:GetSecretValue'], resources: [redshift.secretArn] }
          : { actions: ['redshift-serverless:GetCredentials'], resources: [target] },
        ...(redshift.workgroupId
          ? {}
          : {
              wildcardReason:
                'IAM names a Redshift Serverless workgroup by its id; set aws.redshift.workgroupId to narrow the grant to one workgroup.',
            }),
      };
    }
    const cluster = (resource: string, resourceName: string) =>
      stack.formatArn({
        service: 'redshift',
        resource,
        resourceName,
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      });
    return {
      target: cluster('cluster', redshift.clusterIdentifier),
      credentials:
        'secretArn' in redshift
          ? { actions: ['secretsmanager:GetSecretValue'], resources: [redshift.secretArn] }
          : {
              actions: ['redshift:GetClusterCredentials'],
              resources: [
                cluster('dbuser', `${redshift.clusterIdentifier}/${redshift.dbUser}`),
                cluster('dbname', `${redshift.clusterIdentifier}/${redshift.database}`),
              ],
            },
    };
  }

  /** `scheduled`: whether the schedule is enabled; without it, no run is expected daily. */
  private createAlarms(scheduled: boolean): void {
    const action = new SnsAction(this.topic);
    const alarm = (id: string, props: ConstructorParameters<typeof Alarm>[2]) =>
      new Alarm(this, id, props).addAlarmAction(action);
    alarm('RunFailedAlarm', {
      alarmDescription:
        'A run failed. Its execution shows the cause; live tables are old or new, never partial.',
      metric: this.stateMachine.metricFailed({ period: Duration.minutes(5), statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    alarm('RunTimedOutAlarm', {
      alarmDescription: "A run hit the state machine's 24 h timeout; its cleanup did not run.",
      metric: this.stateMachine.metricTimedOut({ period: Duration.minutes(5), statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
    });
    // With the schedule disabled (runs by hand only), no run is due, and an alarm that treats
    // "nothing ran" as breaching would stay in ALARM for ever.
    if (!scheduled) return;
    // No successful run for 26 hourly periods: a daily schedule plus two hours of slack.
    // No data at all (nothing ran) counts as breaching: that is exactly the stale case.
    alarm('DataStaleAlarm', {
      alarmDescription:
        'No run succeeded in the last 26 hours: the live tables are more than a day old.',
      metric: this.stateMachine.metricSucceeded({ period: Duration.hours(1), statistic: 'Sum' }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 26,
      datapointsToAlarm: 26,
      treatMissingData: TreatMissingData.BREACHING,
    });
  }

  private createDashboard(environmentName: string): Dashboard {
    const executions: IMetric[] = [
      this.stateMachine.metricStarted({ statistic: 'Sum', label: 'started' }),
      this.stateMachine.metricSucceeded({ statistic: 'Sum', label: 'succeeded' }),
      this.stateMachine.metricFailed({ statistic: 'Sum', label: 'failed' }),
      this.stateMachine.metricTimedOut({ statistic: 'Sum', label: 'timed out' }),
    ];
    const lambdaErrors = PIPELINE_HANDLERS.map((name) =>
      this.functions[name].metricErrors({ statistic: 'Sum', label: name }),
    );
    return new Dashboard(this, 'Dashboard', {
      dashboardName: `redshift-aurora-sync-${environmentName}`,
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new GraphWidget({
            title: 'Runs',
            left: executions,
            width: 12,
            period: Duration.hours(1),
          }),
          new GraphWidget({
            title: 'Run duration',
            left: [this.stateMachine.metricTime({ statistic: 'Maximum', label: 'longest run' })],
            width: 12,
            period: Duration.hours(1),
          }),
        ],
        [
          new GraphWidget({
            title: 'Step errors',
            left: lambdaErrors,
            width: 24,
            period: Duration.hours(1),
          }),
        ],
      ],
    });
  }
}

interface WildcardResource {
  /** As given to the policy statement: a literal or a token. */
  readonly resource: string;
  /** Why the grant cannot be narrower, for the reviewer reading the cdk-nag report. */
  readonly reason: string;
}

/**
 * Acknowledges cdk-nag's AwsSolutions-IAM5 finding for each wildcard resource granted to
 * `scope` (a role, so its default policy is covered too). cdk-nag names each finding by the
 * resource flattened the way it flattens CloudFormation references, so the acknowledgment
 * covers exactly that resource and nothing wider. Reasons for one resource are joined.
 */
function acknowledgeWildcardResources(
  scope: IConstruct,
  wildcards: readonly WildcardResource[],
): void {
  const stack = Stack.of(scope);
  const reasons = new Map<string, string[]>();
  for (const { resource, reason } of wildcards) {
    const finding = `AwsSolutions-IAM5[Resource::${flattenReference(stack.resolve(resource))}]`;
    reasons.set(finding, [...(reasons.get(finding) ?? []), reason]);
  }
  for (const [id, reasonList] of reasons) {
    Validations.of(scope).acknowledge({ id, reason: reasonList.join(' ') });
  }
}

/** `{Fn::Join}`, `{Fn::GetAtt}` and `{Ref}` as cdk-nag writes them in finding names: `<Logical.Arn>/runs/*`. */
function flattenReference(value: unknown): string {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const reference = value as Record<string, unknown>;
  if ('Fn::Join' in reference) {
    const [delimiter, parts] = reference['Fn::Join'] as [string, unknown[]];
    return parts.map(flattenReference).join(delimiter);
  }
  if ('Fn::GetAtt' in reference) {
    const [logicalId, attribute] = reference['Fn::GetAtt'] as [string, string];
    return `<${logicalId}.${attribute}>`;
  }
  if ('Ref' in reference) return `<${reference.Ref as string}>`;
  return JSON.stringify(value);
}

function pascalCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, __, letter: string) => letter.toUpperCase());
}

function clusterIdentifierOf(clusterArn: string): string {
  return clusterArn.slice(clusterArn.lastIndexOf(':') + 1);
}

function describeRedshift(aws: RedshiftAuroraSyncProps['aws']): string {
  return 'workgroupName' in aws.redshift
    ? `workgroup ${aws.redshift.workgroupName}`
    : `cluster ${aws.redshift.clusterIdentifier}`;
}
