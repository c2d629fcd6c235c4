/**
 * The pipeline's Lambda functions, one per handler, and the roles they and the databases run
 * as: the per-step access table (lib/function-access.ts) turned into least-privilege statements. The
 * steps that submit and poll Redshift statements share one role, since the Redshift Data API
 * answers only the role that submitted a statement (see roleGroupOf). Redshift assumes the
 * UNLOAD role to write run files, Aurora the import role (feature s3Import) to read them.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Arn, ArnFormat, Duration, Stack, Token } from 'aws-cdk-lib';
import {
  CompositePrincipal,
  type IRole,
  PolicyStatement,
  Role,
  ServicePrincipal,
} from 'aws-cdk-lib/aws-iam';
import { Architecture, Runtime, Tracing } from 'aws-cdk-lib/aws-lambda';
import { type BundlingOptions, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import {
  type LambdaEnvironmentVariable,
  METRICS_NAMESPACE,
  SERVICE_NAME,
} from '../lambdas/handlers/environment-variables';
import { RUNS_PREFIX } from '../lambdas/pipeline/run-files';
import {
  FUNCTION_ACCESS,
  PIPELINE_FUNCTIONS,
  type PipelineFunctionName,
  REDSHIFT_STATEMENTS_ROLE,
  roleGroupOf,
  timeoutSecondsFor,
} from './function-access';
import { acknowledgeWildcardResources, isLiteral, refuseProp, type WildcardResource } from './nag';
import {
  describeRedshift,
  isServerless,
  type RedshiftTarget,
  redshiftEnvironment,
  redshiftGrants,
  secretOf,
  secretPolicyArn,
  sessionCallGrant,
} from './redshift-access';
import { grantImportRead, grantUnloadWrite, type RunFiles } from './run-file-grants';

/** The repository root: handler entries and the lock file are found from here. */
const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Lets ESM bundles load CommonJS dependencies that call require(). */
const ESM_REQUIRE_BANNER =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

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

export interface AuroraTarget {
  /** `arn:<partition>:rds:<region>:<account>:cluster:<id>`, in the stack's region (the RDS Data API is regional). */
  readonly clusterArn: string;
  /** The secret the RDS Data API signs in with; under a customer-managed key, the functions may decrypt with it. */
  readonly secret: ISecret;
  /** The database holding the live tables. */
  readonly database: string;
}

export interface PipelineFunctionsProps {
  /** The environment's name, e.g. `prod`: in the functions' logs and the run records. */
  readonly environmentName: string;
  /** The run bucket, its key and the run files' ARN pattern (a RunStorage). */
  readonly storage: RunFiles;
  readonly redshift: RedshiftTarget;
  readonly aurora: AuroraTarget;
  /**
   * A role already attached to Redshift that UNLOAD runs as. A role whose policy this stack
   * may extend (a `Role`, or `Role.fromRoleArn(...)`) gets the access in its policy; one
   * imported with `{ mutable: false, addGrantsToResources: true }` is named in the run
   * bucket's and the key's policies instead, which must then be ones RunStorage created; one
   * imported with `mutable: false` alone is granted nothing (CDK drops its grants).
   * @default a new role Redshift assumes, to be attached to the cluster or namespace
   */
  readonly unloadRole?: IRole;
  /** The topic fail-run tells about a failed run (the alarm topic). */
  readonly alarmTopic: ITopic;
  /** The state machine's name, which prepare-run lists the executions of to refuse overlapping runs. */
  readonly stateMachineName: string;
  /** How many tables a run syncs: start-unload's timeout grows with it (timeoutSecondsFor). */
  readonly tableCount: number;
  /**
   * How long the functions' logs are kept.
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;
  /**
   * Memory of every function, in MB (128 to 10240). The steps mostly wait on the Data APIs;
   * more memory also means more CPU for parsing large manifests and results.
   * @default 512
   */
  readonly memorySizeMb?: number;
  /**
   * Where the handler files are (`<dir>/<name>.ts`, each exporting `handler`).
   * @default `lambdas/handlers` in this repository
   */
  readonly handlersDirectory?: string;
}

export class PipelineFunctions extends Construct {
  readonly functions: Readonly<Record<PipelineFunctionName, NodejsFunction>>;
  /** The role UNLOAD runs as: `unloadRole`, or the one created here. */
  readonly unloadRole: IRole;
  /** Whether the UNLOAD role was created here (and so must still be attached to Redshift). */
  readonly unloadRoleCreated: boolean;
  /** The role to attach to the Aurora cluster for feature s3Import. */
  readonly auroraImportRole: Role;

  constructor(scope: Construct, id: string, props: PipelineFunctionsProps) {
    super(scope, id);
    validate(this, props);
    const { storage } = props;
    this.unloadRoleCreated = !props.unloadRole;
    this.unloadRole = props.unloadRole ?? this.createUnloadRole(props.redshift);
    grantUnloadWrite(this, storage, this.unloadRole);
    this.auroraImportRole = new Role(this, 'AuroraImportRole', {
      assumedBy: new ServicePrincipal('rds.amazonaws.com'),
      description: `Aurora ${auroraClusterIdentifier(props.aurora.clusterArn)} assumes this role (feature s3Import) to read UNLOAD files`,
    });
    grantImportRead(storage, this.auroraImportRole);

    // Every execution of the state machine: arn:...:execution:<state machine name>:<execution>.
    const executionsArn = Stack.of(this).formatArn({
      service: 'states',
      resource: 'execution',
      resourceName: `${props.stateMachineName}:*`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
    const environment = {
      RUN_BUCKET: storage.bucket.bucketName,
      KMS_KEY_ARN: storage.key.keyArn,
      UNLOAD_ROLE_ARN: this.unloadRole.roleArn,
      AURORA_CLUSTER_ARN: props.aurora.clusterArn,
      AURORA_SECRET_ARN: props.aurora.secret.secretArn,
      AURORA_DATABASE: props.aurora.database,
      ...redshiftEnvironment(props.redshift),
      ALARM_TOPIC_ARN: props.alarmTopic.topicArn,
      ENVIRONMENT_NAME: props.environmentName,
      POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
      POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    } satisfies Partial<Record<LambdaEnvironmentVariable, string>>;
    const functions = {} as Record<PipelineFunctionName, NodejsFunction>;
    const roles = new Map<string, { role: Role; wildcards: WildcardResource[] }>();
    for (const name of PIPELINE_FUNCTIONS) {
      const group = roleGroupOf(name);
      let shared = roles.get(group);
      if (!shared) {
        shared = { role: this.createFunctionRole(group), wildcards: [] };
        roles.set(group, shared);
      }
      functions[name] = this.createFunction(name, shared.role, environment, props);
      shared.wildcards.push(
        ...this.grantStepAccess(name, shared.role, { ...props, executionsArn }),
      );
    }
    for (const { role, wildcards } of roles.values()) acknowledgeWildcardResources(role, wildcards);
    this.functions = functions;
  }

  private createUnloadRole(redshift: RedshiftTarget): Role {
    return new Role(this, 'UnloadRole', {
      // Redshift Serverless assumes roles as redshift-serverless.amazonaws.com too.
      assumedBy: isServerless(redshift)
        ? new CompositePrincipal(
            new ServicePrincipal('redshift.amazonaws.com'),
            new ServicePrincipal('redshift-serverless.amazonaws.com'),
          )
        : new ServicePrincipal('redshift.amazonaws.com'),
      description: `Redshift ${describeRedshift(redshift)} assumes this role to UNLOAD into the run bucket`,
    });
  }

  private createFunction(
    name: PipelineFunctionName,
    role: Role,
    environment: Partial<Record<LambdaEnvironmentVariable, string>>,
    props: PipelineFunctionsProps,
  ): NodejsFunction {
    const id = pascalCase(name);
    const logGroup = new LogGroup(this, `${id}Logs`, {
      retention: props.logRetention ?? RetentionDays.THREE_MONTHS,
    });
    role.addToPolicy(
      new PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroup.logGroupArn],
      }),
    );
    return new NodejsFunction(this, id, {
      entry: join(
        props.handlersDirectory ?? join(PROJECT_ROOT, 'lambdas', 'handlers'),
        `${name}.ts`,
      ),
      handler: 'handler',
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
      projectRoot: PROJECT_ROOT,
      runtime: Runtime.NODEJS_24_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySizeMb ?? 512,
      timeout: Duration.seconds(timeoutSecondsFor(name, props.tableCount)),
      tracing: Tracing.ACTIVE,
      role,
      logGroup,
      environment: {
        ...(environment as Record<string, string>),
        // Stack traces point into the TypeScript sources through the bundled source maps.
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: LAMBDA_BUNDLING,
    });
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

  /** Grants the step's access (FUNCTION_ACCESS) to its role; returns the wildcards to acknowledge. */
  private grantStepAccess(
    name: PipelineFunctionName,
    role: Role,
    context: PipelineFunctionsProps & { readonly executionsArn: string },
  ): WildcardResource[] {
    const access = FUNCTION_ACCESS[name];
    const { aurora, redshift, storage } = context;
    const runFiles = storage.runFilesArn;
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
        [aurora.clusterArn],
      );
      grantSecretRead(aurora.secret, role);
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
      const target = redshiftGrants(this, redshift);
      grant(
        ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
        [target.target],
      );
      grant(target.credentials.actions, target.credentials.resources);
      role.addToPolicy(new PolicyStatement(sessionCallGrant(role.roleId)));
      wildcards.push({
        resource: '*',
        reason:
          'A Redshift Data API call on an open session names no cluster or workgroup (optional resource types of ExecuteStatement and BatchExecuteStatement); the condition keeps it to sessions this role opened.',
      });
      secretOf(redshift)?.encryptionKey?.grantDecrypt(role);
      if (target.wildcardReason) {
        wildcards.push({ resource: target.target, reason: target.wildcardReason });
      }
    }
    if (access.cancelsStatements) {
      // "Grants permission to cancel a running query": no resource types, condition key
      // redshift-data:statement-owner-iam-userid only; the Data API lets a role cancel only the
      // statements it submitted.
      // https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftdataapi.html
      grant(['redshift-data:CancelStatement'], ['*']);
      wildcards.push({
        resource: '*',
        reason:
          'redshift-data:CancelStatement supports no resource-level permissions; the Data API lets a role cancel only the statements it submitted.',
      });
      // ListStatements finds the run's statements by name, also those the failed state does not
      // name (lambdas/pipeline/steps/unload-stop.ts). The same page gives it no resource type
      // (so "*" only; ListTables, by contrast, has cluster), only the condition key
      // redshift-data:statement-owner-iam-userid, whose value for a listing is not documented,
      // so no condition here; the Data API lists only the caller's role's statements anyway
      // ("all statements run by the caller's IAM role",
      // https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ListStatements.html).
      grant(['redshift-data:ListStatements'], ['*']);
      wildcards.push({
        resource: '*',
        reason:
          "redshift-data:ListStatements supports no resource-level permissions; the Data API lists only the statements of the caller's own role.",
      });
    }
    if (access.readsRunFiles) {
      grant(['s3:GetObject'], [runFiles]);
      grant(['kms:Decrypt'], [storage.key.keyArn]);
    }
    if (access.writesRunFiles) {
      grant(['s3:PutObject'], [runFiles]);
      grant(['kms:GenerateDataKey'], [storage.key.keyArn]);
    }
    if (access.deletesRunFiles) {
      grant(['s3:DeleteObject'], [runFiles]);
      // Listing finds what to delete; the condition keeps it to the runs/ prefix.
      role.addToPolicy(
        new PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [storage.bucket.bucketArn],
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
    if (access.describesExecutions) {
      grant(['states:DescribeExecution'], [context.executionsArn]);
      wildcards.push({
        resource: context.executionsArn,
        reason:
          "The run holding the run lease is a different execution each time, named when it starts; the resource is this state machine's executions only.",
      });
    }
    if (access.notifies) {
      // Written out rather than topic.grantPublish(), which grants kms:GenerateDataKey*.
      grant(['sns:Publish'], [context.alarmTopic.topicArn]);
      const topicKey = context.alarmTopic.masterKey;
      if (topicKey) grant(['kms:GenerateDataKey', 'kms:Decrypt'], [topicKey.keyArn]);
    }
    return wildcards;
  }
}

/**
 * GetSecretValue on the secret and, when a customer-managed key encrypts it, kms:Decrypt on
 * that key: Secrets Manager decrypts with the caller's permissions. A secret under the
 * AWS-managed key (aws/secretsmanager) needs no key grant; that key's policy allows use
 * through Secrets Manager to the account.
 */
function grantSecretRead(secret: ISecret, role: Role): void {
  role.addToPolicy(
    new PolicyStatement({
      actions: ['secretsmanager:GetSecretValue'],
      resources: [secretPolicyArn(secret)],
    }),
  );
  secret.encryptionKey?.grantDecrypt(role);
}

function validate(scope: Construct, props: PipelineFunctionsProps): void {
  if (isLiteral(props.aurora.clusterArn) && !AURORA_CLUSTER_ARN.test(props.aurora.clusterArn)) {
    refuseProp(
      scope,
      'aurora.clusterArn',
      `is ${JSON.stringify(props.aurora.clusterArn)}; give an Aurora cluster ARN, arn:aws:rds:<region>:<account>:cluster:<id>.`,
    );
  }
  if (isLiteral(props.stateMachineName) && !STATE_MACHINE_NAME.test(props.stateMachineName)) {
    refuseProp(
      scope,
      'stateMachineName',
      `is ${JSON.stringify(props.stateMachineName)}; give 1 to 80 letters, digits, hyphens or underscores.`,
    );
  }
  if (!Number.isInteger(props.tableCount) || props.tableCount < 1) {
    refuseProp(
      scope,
      'tableCount',
      `is ${props.tableCount}; give the number of tables a run syncs, 1 or more.`,
    );
  }
  const memory = props.memorySizeMb;
  if (
    memory !== undefined &&
    !Token.isUnresolved(memory) &&
    !(Number.isInteger(memory) && memory >= 128 && memory <= 10_240)
  ) {
    refuseProp(scope, 'memorySizeMb', `is ${memory}; Lambda takes whole MB from 128 to 10240.`);
  }
}

const AURORA_CLUSTER_ARN = /^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[a-zA-Z][a-zA-Z0-9-]*$/;
/** Step Functions state machine names (https://docs.aws.amazon.com/step-functions/latest/apireference/API_CreateStateMachine.html). */
const STATE_MACHINE_NAME = /^[A-Za-z0-9_-]{1,80}$/;

function pascalCase(name: string): string {
  return name.replace(/(^|-)([a-z])/g, (_, __, letter: string) => letter.toUpperCase());
}

/** The cluster's identifier, the last part of its ARN (a token when the ARN is one). */
export function auroraClusterIdentifier(clusterArn: string): string {
  return Arn.split(clusterArn, ArnFormat.COLON_RESOURCE_NAME).resourceName ?? clusterArn;
}
