import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, requireAwsSettings } from '../lambdas/core/config';
import { LAMBDA_ENVIRONMENT_VARIABLES } from '../lambdas/handlers/environment-variables';
import {
  PIPELINE_FUNCTIONS,
  type PipelineFunctionName,
  roleGroupOf,
  timeoutSecondsFor,
} from '../lib/function-access';
import { SyncStack } from '../lib/sync-stack';

const EXAMPLE = JSON.parse(readFileSync('config/example.json', 'utf8')) as Record<string, unknown>;
const EXAMPLE_AWS = EXAMPLE.aws as Record<string, unknown>;
const EXAMPLE_TABLES = (EXAMPLE.tables as unknown[]).length;
/** The functions that run as the one role submitting, polling and cancelling Redshift statements. */
const REDSHIFT_ROLE_FUNCTIONS: PipelineFunctionName[] = [
  'start-unload',
  'check-unload',
  'fail-run',
];

interface Synthesized {
  readonly app: App;
  readonly stack: SyncStack;
  readonly template: Template;
}

const outdirs: string[] = [];
afterAll(() => {
  for (const outdir of outdirs) rmSync(outdir, { recursive: true, force: true });
});

/** The example config with `aws` changed by `awsChanges`, built without bundling. */
function synth(awsChanges: Record<string, unknown> = {}, environmentName = 'test'): Synthesized {
  const config = parseConfig({ ...EXAMPLE, aws: { ...EXAMPLE_AWS, ...awsChanges } }, 'test');
  const outdir = mkdtempSync(join(tmpdir(), 'cdk-stack-test-'));
  outdirs.push(outdir);
  const app = new App({
    outdir,
    builtinCloudFormationValidation: false,
    context: { 'aws:cdk:bundling-stacks': [] },
  });
  const stack = new SyncStack(app, {
    environmentName,
    runtimeConfig: config,
    aws: requireAwsSettings(config, 'test'),
  });
  return { app, stack, template: Template.fromStack(stack) };
}

interface Statement {
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Condition?: unknown;
}

function logicalIdOf(stack: Stack, construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as never);
}

/** Every statement granted to the function's role, with actions as a list. */
function statementsOf(synthesized: Synthesized, name: PipelineFunctionName): Statement[] {
  const { stack, template } = synthesized;
  const role = synthesized.stack.sync.functions[name].role!;
  const roleId = logicalIdOf(stack, role);
  const policies = template.findResources('AWS::IAM::Policy', {
    Properties: { Roles: [{ Ref: roleId }] },
  });
  return Object.values(policies).flatMap(
    (policy) => (policy.Properties.PolicyDocument.Statement as Statement[]) ?? [],
  );
}

function actionsOf(statements: Statement[]): string[] {
  return statements.flatMap((statement) =>
    Array.isArray(statement.Action) ? statement.Action : [statement.Action],
  );
}

function resourcesFor(statements: Statement[], action: string): unknown[] {
  return statements
    .filter((statement) => actionsOf([statement]).includes(action))
    .flatMap((statement) =>
      Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource],
    );
}

/** The resources `action` is granted on without a condition: where new Data API calls may go. */
function targetsFor(statements: Statement[], action: string): unknown[] {
  return resourcesFor(
    statements.filter((statement) => statement.Condition === undefined),
    action,
  );
}

describe('the example stack', () => {
  let example: Synthesized;
  beforeAll(() => {
    example = synth();
  });

  it('is named per environment and deploys to the configured account and region', () => {
    expect(example.stack.stackName).toBe('RedshiftAuroraSync-test');
    expect(example.stack.account).toBe('123456789012');
    expect(example.stack.region).toBe('eu-west-1');
  });

  it('passes the cdk-nag AwsSolutions checks, every exception acknowledged with a reason', () => {
    const report = new AwsSolutionsChecks(example.app).validateScope(example.app);
    expect(
      report.violations.map(
        (violation) =>
          `${violation.ruleName}: ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`,
      ),
    ).toEqual([]);
    expect(report.success).toBe(true);
  });

  it('grants no wildcard action in any IAM policy', () => {
    const documents = [
      ...Object.values(example.template.findResources('AWS::IAM::Policy')).map(
        (policy) => policy.Properties.PolicyDocument,
      ),
      ...Object.values(example.template.findResources('AWS::IAM::Role')).flatMap((role) =>
        (role.Properties.Policies ?? []).map(
          (policy: { PolicyDocument: unknown }) => policy.PolicyDocument,
        ),
      ),
    ] as { Statement: Statement[] }[];
    const actions = documents.flatMap((document) => actionsOf(document.Statement));
    expect(actions.length).toBeGreaterThan(50);
    expect(actions.filter((action) => action.includes('*'))).toEqual([]);
    expect(example.template.findResources('AWS::IAM::ManagedPolicy')).toEqual({});
    const roles = Object.values(example.template.findResources('AWS::IAM::Role'));
    expect(roles.filter((role) => role.Properties.ManagedPolicyArns)).toEqual([]);
  });

  it('has one function per handler: Node 24 on arm64, traced, with its timeout and every variable', () => {
    for (const name of PIPELINE_FUNCTIONS) {
      const fn = example.stack.sync.functions[name];
      const resource =
        example.template.findResources('AWS::Lambda::Function')[logicalIdOf(example.stack, fn)]!;
      expect(resource.Properties).toMatchObject({
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        Timeout: timeoutSecondsFor(name, EXAMPLE_TABLES),
        LoggingConfig: { LogGroup: { Ref: expect.any(String) } },
      });
      const variables = Object.keys(resource.Properties.Environment.Variables);
      const expected = Object.keys(LAMBDA_ENVIRONMENT_VARIABLES).filter(
        (name) => !['REDSHIFT_WORKGROUP_NAME', 'REDSHIFT_DB_USER'].includes(name),
      );
      expect(variables).toEqual(expect.arrayContaining(expected));
    }
    const timeouts = Object.fromEntries(
      PIPELINE_FUNCTIONS.map((name) => [name, timeoutSecondsFor(name, EXAMPLE_TABLES)]),
    );
    expect(timeouts).toMatchObject({
      // Starts files for 200 s, each ending within its 45 s Data API call.
      'import-file': 300,
      // Follows the unload session for 50 s, then submits its next call.
      'check-unload': 120,
      'check-locks': 120,
      // Follows a truncate or merge swap past the Data API's cut-off for up to 13 minutes.
      'swap-tables': 900,
      'create-staging': 900,
      'check-staging': 900,
      'prepare-run': 60,
      // Column discovery may wait 40 s per table, one table after another.
      'start-unload': 60 + 40 * EXAMPLE_TABLES,
    });
    expect(timeoutSecondsFor('start-unload', 30)).toBe(900);
    example.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          AURORA_CLUSTER_ARN: 'arn:aws:rds:eu-west-1:123456789012:cluster:app',
          AURORA_DATABASE: 'app',
          REDSHIFT_CLUSTER_IDENTIFIER: 'analytics',
          REDSHIFT_DATABASE: 'analytics',
          REDSHIFT_SECRET_ARN: (EXAMPLE_AWS.redshift as { secretArn: string }).secretArn,
          ENVIRONMENT_NAME: 'test',
          POWERTOOLS_SERVICE_NAME: 'redshift-aurora-sync',
        }),
      },
    });
  });

  it('lets every function use Aurora, on the cluster and its secret only', () => {
    // check-unload itself does not, but it shares start-unload's role (see the Redshift test).
    for (const name of PIPELINE_FUNCTIONS) {
      const statements = statementsOf(example, name);
      expect(resourcesFor(statements, 'rds-data:ExecuteStatement')).toEqual([
        'arn:aws:rds:eu-west-1:123456789012:cluster:app',
      ]);
      expect(actionsOf(statements)).toEqual(
        expect.arrayContaining([
          'rds-data:BeginTransaction',
          'rds-data:CommitTransaction',
          'rds-data:RollbackTransaction',
        ]),
      );
      expect(resourcesFor(statements, 'secretsmanager:GetSecretValue')).toContain(
        (EXAMPLE_AWS.aurora as { secretArn: string }).secretArn,
      );
    }
  });

  it('runs start-unload, check-unload and fail-run as one role, since the Data API answers only the submitter', () => {
    const roleRef = (name: PipelineFunctionName) =>
      example.stack.resolve(example.stack.sync.functions[name].role!.roleArn);
    expect(roleRef('check-unload')).toEqual(roleRef('start-unload'));
    const lambdaRole = (name: PipelineFunctionName) =>
      example.template.findResources('AWS::Lambda::Function')[
        logicalIdOf(example.stack, example.stack.sync.functions[name])
      ]!.Properties.Role;
    expect(lambdaRole('check-unload')).toEqual(lambdaRole('start-unload'));
    // fail-run cancels the unload start-unload submitted.
    expect(lambdaRole('fail-run')).toEqual(lambdaRole('start-unload'));
    const others = PIPELINE_FUNCTIONS.filter((name) => !REDSHIFT_ROLE_FUNCTIONS.includes(name));
    const otherRoles = new Set(others.map((name) => JSON.stringify(lambdaRole(name))));
    expect(otherRoles.size).toBe(others.length);
    expect(otherRoles.has(JSON.stringify(lambdaRole('start-unload')))).toBe(false);
    expect(others.map(roleGroupOf)).toEqual(others);
  });

  it('lets only the Redshift role submit Redshift statements and read them', () => {
    for (const name of PIPELINE_FUNCTIONS) {
      const statements = statementsOf(example, name);
      const submits = targetsFor(statements, 'redshift-data:ExecuteStatement');
      const reads = resourcesFor(statements, 'redshift-data:DescribeStatement');
      expect(submits).toEqual(
        REDSHIFT_ROLE_FUNCTIONS.includes(name)
          ? [
              {
                'Fn::Join': [
                  '',
                  [
                    'arn:',
                    { Ref: 'AWS::Partition' },
                    ':redshift:eu-west-1:123456789012:cluster:analytics',
                  ],
                ],
              },
            ]
          : [],
      );
      expect(targetsFor(statements, 'redshift-data:BatchExecuteStatement')).toEqual(submits);
      // Calls on a session name no cluster: "*", for the sessions of this role only.
      const role = example.stack.sync.functions[name].role!;
      const onSessions = statements.filter(
        (statement) =>
          statement.Condition !== undefined &&
          actionsOf([statement]).includes('redshift-data:ExecuteStatement'),
      );
      expect(onSessions).toEqual(
        REDSHIFT_ROLE_FUNCTIONS.includes(name)
          ? [
              {
                Effect: 'Allow',
                Action: ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
                Resource: '*',
                Condition: {
                  StringLike: {
                    'redshift-data:session-owner-iam-userid': {
                      'Fn::Join': [
                        '',
                        [{ 'Fn::GetAtt': [logicalIdOf(example.stack, role), 'RoleId'] }, ':*'],
                      ],
                    },
                  },
                },
              },
            ]
          : [],
      );
      expect(reads).toEqual(REDSHIFT_ROLE_FUNCTIONS.includes(name) ? ['*'] : []);
      expect(resourcesFor(statements, 'redshift-data:CancelStatement')).toEqual(reads);
      // fail-run finds its run's statements by name: ListStatements has no resource type.
      expect(resourcesFor(statements, 'redshift-data:ListStatements')).toEqual(reads);
    }
    expect(
      resourcesFor(statementsOf(example, 'start-unload'), 'secretsmanager:GetSecretValue'),
    ).toContain((EXAMPLE_AWS.redshift as { secretArn: string }).secretArn);
  });

  it('scopes run-file access to runs/ and to what each step does with them', () => {
    const runFiles = {
      'Fn::Join': [
        '',
        [
          { 'Fn::GetAtt': [logicalIdOf(example.stack, example.stack.sync.bucket), 'Arn'] },
          '/runs/*',
        ],
      ],
    };
    // fail-run shares their role.
    const writers = ['prepare-run', 'start-unload', 'check-unload', 'fail-run'];
    // start-unload clears its tables' folders before UNLOAD (ListObjectsV2, DeleteObjects);
    // check-unload shares its role.
    const deleters = [
      'prepare-run',
      'dry-run',
      'start-unload',
      'check-unload',
      'finish-run',
      'fail-run',
    ];
    for (const name of PIPELINE_FUNCTIONS) {
      const statements = statementsOf(example, name);
      expect(resourcesFor(statements, 's3:PutObject')).toEqual(
        writers.includes(name) ? [runFiles] : [],
      );
      expect(resourcesFor(statements, 's3:DeleteObject')).toEqual(
        deleters.includes(name) ? [runFiles] : [],
      );
      expect(resourcesFor(statements, 's3:GetObject')).toEqual(
        name === 'prepare-run' ? [] : [runFiles],
      );
      const listing = statements.filter((statement) =>
        actionsOf([statement]).includes('s3:ListBucket'),
      );
      expect(listing.map((statement) => statement.Condition)).toEqual(
        deleters.includes(name) ? [{ StringLike: { 's3:prefix': ['runs/*'] } }] : [],
      );
    }
  });

  it('lets prepare-run describe the executions of its own state machine only, by its fixed name', () => {
    const resources = resourcesFor(
      statementsOf(example, 'prepare-run'),
      'states:DescribeExecution',
    );
    expect(resources).toEqual([
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':states:eu-west-1:123456789012:execution:redshift-aurora-sync-test:*',
          ],
        ],
      },
    ]);
    example.template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'redshift-aurora-sync-test',
    });
    for (const name of PIPELINE_FUNCTIONS.filter((name) => name !== 'prepare-run')) {
      expect(resourcesFor(statementsOf(example, name), 'states:DescribeExecution')).toEqual([]);
    }
    // The run lease, not the eventually consistent list, keeps runs apart.
    for (const name of PIPELINE_FUNCTIONS) {
      expect(resourcesFor(statementsOf(example, name), 'states:ListExecutions')).toEqual([]);
    }
  });

  it('lets only fail-run (and the functions sharing its role) publish to the alarm topic', () => {
    const topic = { Ref: logicalIdOf(example.stack, example.stack.sync.topic) };
    for (const name of PIPELINE_FUNCTIONS) {
      expect(resourcesFor(statementsOf(example, name), 'sns:Publish')).toEqual(
        REDSHIFT_ROLE_FUNCTIONS.includes(name) ? [topic] : [],
      );
    }
  });

  it('creates the UNLOAD role for Redshift and the s3Import role for Aurora, each scoped to the bucket', () => {
    const roles = example.template.findResources('AWS::IAM::Role');
    const trusted = (service: string) =>
      Object.entries(roles).filter(([, role]) =>
        JSON.stringify(role.Properties.AssumeRolePolicyDocument).includes(service),
      );
    expect(trusted('redshift.amazonaws.com')).toHaveLength(1);
    expect(trusted('rds.amazonaws.com')).toHaveLength(1);
    const policyOf = (roleId: string) =>
      Object.values(
        example.template.findResources('AWS::IAM::Policy', {
          Properties: { Roles: [{ Ref: roleId }] },
        }),
      ).flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
    const unload = policyOf(trusted('redshift.amazonaws.com')[0]![0]);
    expect(actionsOf(unload).sort()).toEqual(
      [
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
        's3:GetBucketLocation',
        's3:ListBucket',
        's3:PutObject',
      ].sort(),
    );
    const aurora = policyOf(trusted('rds.amazonaws.com')[0]![0]);
    expect(actionsOf(aurora).sort()).toEqual(['kms:Decrypt', 's3:GetObject', 's3:ListBucket']);
    const outputs = example.template.findOutputs('*');
    expect(Object.values(outputs).map((output) => output.Description)).toEqual(
      expect.arrayContaining([
        expect.stringContaining(
          'aws rds add-role-to-db-cluster --db-cluster-identifier app --feature-name s3Import',
        ),
        expect.stringContaining(
          'aws redshift modify-cluster-iam-roles --cluster-identifier analytics',
        ),
      ]),
    );
  });

  it('keeps run files in a KMS-encrypted, SSL-only, private bucket that expires them', () => {
    example.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          {
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: 'aws:kms',
              KMSMasterKeyID: {
                'Fn::GetAtt': [logicalIdOf(example.stack, example.stack.sync.key), 'Arn'],
              },
            },
          },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: {
        Rules: [
          { Prefix: 'runs/', ExpirationInDays: 7, Status: 'Enabled' },
          { AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' },
        ],
      },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'run-bucket/' }),
      VersioningConfiguration: Match.absent(),
    });
    example.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: logicalIdOf(example.stack, example.stack.sync.bucket) },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
    example.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('starts the state machine on the configured schedule, in its time zone, with input {}', () => {
    example.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Europe/Berlin',
      State: 'ENABLED',
      Target: Match.objectLike({
        Arn: { Ref: logicalIdOf(example.stack, example.stack.sync.stateMachine) },
        Input: '{}',
      }),
    });
  });

  it('alarms on failed and timed-out runs and on a day without success, to the encrypted topic', () => {
    const topic = { Ref: logicalIdOf(example.stack, example.stack.sync.topic) };
    const alarms = Object.values(example.template.findResources('AWS::CloudWatch::Alarm')).map(
      (alarm) => alarm.Properties,
    );
    expect(alarms).toHaveLength(3);
    const byMetric = Object.fromEntries(alarms.map((alarm) => [alarm.MetricName, alarm]));
    expect(byMetric.ExecutionsFailed).toMatchObject({
      Namespace: 'AWS/States',
      Statistic: 'Sum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [topic],
    });
    expect(byMetric.ExecutionsTimedOut).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      AlarmActions: [topic],
    });
    const stale = byMetric.ExecutionsSucceeded;
    expect(stale).toMatchObject({
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      TreatMissingData: 'breaching',
      AlarmActions: [topic],
    });
    expect(stale.Period * stale.EvaluationPeriods).toBe(26 * 3600);
    expect(stale.DatapointsToAlarm).toBe(stale.EvaluationPeriods);
    example.template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [logicalIdOf(example.stack, example.stack.sync.key), 'Arn'] },
    });
    example.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'data-platform@example.com',
    });
    example.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('keeps the logical IDs of the one-construct layout, so an update replaces no resource', () => {
    // Replacing these would lose the key and the buckets' contents, and the state machine's
    // and the dashboard's fixed names would collide with the resources being replaced.
    const logicalIds = Object.entries(
      example.template.toJSON().Resources as Record<string, { Type: string }>,
    ).map(([id, resource]) => `${resource.Type} ${id}`);
    expect(logicalIds).toEqual(
      expect.arrayContaining([
        'AWS::KMS::Key SyncKey2018FC8F',
        'AWS::S3::Bucket SyncRunBucketA4009CD1',
        'AWS::S3::Bucket SyncAccessLogs4BB64B74',
        'AWS::SNS::Topic SyncAlarmTopic8D8A3335',
        'AWS::IAM::Role SyncRedshiftStatementsRole29D2AAEF',
        'AWS::IAM::Role SyncUnloadRoleDC05A879',
        'AWS::IAM::Role SyncAuroraImportRoleABB689CF',
        'AWS::Logs::LogGroup SyncSwapTablesLogsA9DEA947',
        'AWS::StepFunctions::StateMachine SyncStateMachine81090156',
        'AWS::Logs::LogGroup SyncStateMachineLogs3C79AAD8',
        'AWS::Scheduler::Schedule SyncScheduleAC35317D',
        'AWS::CloudWatch::Dashboard SyncDashboard1C79A5C8',
      ]),
    );
    expect(Object.keys(example.template.findOutputs('*')).sort()).toEqual([
      'SyncAuroraImportRoleArn9B87BD63',
      'SyncRunBucketNameF39D7989',
      'SyncStateMachineArnBAFAB495',
      'SyncUnloadRoleArn91017642',
    ]);
  });

  it('runs the state machine as Standard, traced, logged and cut off after 24 h', () => {
    example.template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: false }),
    });
  });
});

describe('stacks for other Redshift and role settings', () => {
  it('signs in to a cluster as a database user with GetClusterCredentials on that user and database', () => {
    const synthesized = synth({
      redshift: { clusterIdentifier: 'warehouse', database: 'dw', dbUser: 'sync' },
    });
    const statements = statementsOf(synthesized, 'start-unload');
    expect(resourcesFor(statements, 'redshift:GetClusterCredentials')).toEqual([
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':redshift:eu-west-1:123456789012:dbuser:warehouse/sync',
          ],
        ],
      },
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':redshift:eu-west-1:123456789012:dbname:warehouse/dw',
          ],
        ],
      },
    ]);
    synthesized.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          REDSHIFT_DB_USER: 'sync',
          REDSHIFT_SECRET_ARN: Match.absent(),
        }),
      },
    });
  });

  it('uses a Serverless workgroup by id when given, with its IAM identity when there is no secret', () => {
    const workgroupId = '0f0e0d0c-0b0a-0908-0706-050403020100';
    const synthesized = synth({
      redshift: { workgroupName: 'wg-1', workgroupId, database: 'dev' },
    });
    const workgroupArn = {
      'Fn::Join': [
        '',
        [
          'arn:',
          { Ref: 'AWS::Partition' },
          `:redshift-serverless:eu-west-1:123456789012:workgroup/${workgroupId}`,
        ],
      ],
    };
    const statements = statementsOf(synthesized, 'start-unload');
    expect(targetsFor(statements, 'redshift-data:ExecuteStatement')).toEqual([workgroupArn]);
    synthesized.template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [
          Match.objectLike({ Principal: { Service: 'redshift.amazonaws.com' } }),
          Match.objectLike({ Principal: { Service: 'redshift-serverless.amazonaws.com' } }),
        ],
      },
    });
    expect(resourcesFor(statements, 'redshift-serverless:GetCredentials')).toEqual([workgroupArn]);
    synthesized.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          REDSHIFT_WORKGROUP_NAME: 'wg-1',
          REDSHIFT_CLUSTER_IDENTIFIER: Match.absent(),
        }),
      },
    });
    expect(
      new AwsSolutionsChecks(synthesized.app).validateScope(synthesized.app).violations,
    ).toEqual([]);
  });

  it('covers every workgroup of the account without an id, acknowledged for cdk-nag', () => {
    const synthesized = synth({ redshift: { workgroupName: 'wg-1', database: 'dev' } });
    expect(
      targetsFor(statementsOf(synthesized, 'start-unload'), 'redshift-data:ExecuteStatement'),
    ).toEqual([
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':redshift-serverless:eu-west-1:123456789012:workgroup/*',
          ],
        ],
      },
    ]);
    expect(
      new AwsSolutionsChecks(synthesized.app).validateScope(synthesized.app).violations,
    ).toEqual([]);
  });

  it('uses a given UNLOAD role instead of creating one', () => {
    const unloadRoleArn = 'arn:aws:iam::123456789012:role/existing-unload';
    const synthesized = synth({ unloadRoleArn });
    const roles = Object.values(synthesized.template.findResources('AWS::IAM::Role'));
    expect(
      roles.filter((role) =>
        JSON.stringify(role.Properties.AssumeRolePolicyDocument).includes('redshift.amazonaws.com'),
      ),
    ).toEqual([]);
    synthesized.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ UNLOAD_ROLE_ARN: unloadRoleArn }) },
    });
    expect(
      Object.keys(synthesized.template.findOutputs('*')).some((id) => id.includes('UnloadRole')),
    ).toBe(false);
  });

  it('names a given UNLOAD role in the bucket and key policies, with what UNLOAD needs', () => {
    const unloadRoleArn = 'arn:aws:iam::123456789012:role/existing-unload';
    const synthesized = synth({ unloadRoleArn });
    const { stack, template } = synthesized;
    const bucketArn = { 'Fn::GetAtt': [logicalIdOf(stack, stack.sync.bucket), 'Arn'] };
    const forRole = (statements: (Statement & { Principal?: unknown })[]) =>
      statements
        .filter(
          (statement) =>
            JSON.stringify(statement.Principal) === JSON.stringify({ AWS: unloadRoleArn }),
        )
        .map((statement) => ({
          actions: actionsOf([statement]).sort(),
          resource: statement.Resource,
        }));
    const bucketPolicy = Object.values(template.findResources('AWS::S3::BucketPolicy')).find(
      (policy) =>
        JSON.stringify(policy.Properties.Bucket) ===
        JSON.stringify({ Ref: logicalIdOf(stack, stack.sync.bucket) }),
    )!;
    expect(forRole(bucketPolicy.Properties.PolicyDocument.Statement)).toEqual([
      { actions: ['s3:PutObject'], resource: { 'Fn::Join': ['', [bucketArn, '/runs/*']] } },
      { actions: ['s3:GetBucketLocation', 's3:ListBucket'], resource: bucketArn },
    ]);
    const key = template.findResources('AWS::KMS::Key')[logicalIdOf(stack, stack.sync.key)]!;
    expect(forRole(key.Properties.KeyPolicy.Statement)).toEqual([
      { actions: ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'], resource: '*' },
    ]);
    expect(
      new AwsSolutionsChecks(synthesized.app).validateScope(synthesized.app).violations,
    ).toEqual([]);
  });

  it('refuses a schedule time that daylight saving skips or repeats in its time zone', () => {
    expect(() =>
      synth({
        schedule: { expression: 'cron(30 2 * * ? *)', timeZone: 'Europe/Berlin', enabled: true },
      }),
    ).toThrow(
      /aws\.schedule\.expression "cron\(30 2 \* \* \? \*\)" in Europe\/Berlin falls in a daylight-saving change: \d{4}-03-\d\d \(02:00-03:00 does not exist\), \d{4}-10-\d\d \(02:00-03:00 happens twice\).*Pick a time outside 01:00-03:59 local/,
    );
    // The same time of day where there is no daylight saving, and every configured environment.
    expect(() =>
      synth({ schedule: { expression: 'cron(30 2 * * ? *)', timeZone: 'UTC', enabled: true } }),
    ).not.toThrow();
    for (const environment of ['dev', 'example', 'prod']) {
      const config = JSON.parse(readFileSync(`config/${environment}.json`, 'utf8'));
      expect(() => synth({ schedule: config.aws.schedule }, environment)).not.toThrow();
    }
  });

  it('deploys a disabled schedule, and no e-mail subscription without alarmEmail', () => {
    const { alarmEmail: _, ...withoutEmail } = EXAMPLE_AWS;
    const config = parseConfig(
      {
        ...EXAMPLE,
        aws: {
          ...withoutEmail,
          schedule: { expression: 'rate(12 hours)', timeZone: 'America/New_York', enabled: false },
        },
      },
      'test',
    );
    const outdir = mkdtempSync(join(tmpdir(), 'cdk-stack-test-'));
    outdirs.push(outdir);
    const app = new App({
      outdir,
      builtinCloudFormationValidation: false,
      context: { 'aws:cdk:bundling-stacks': [] },
    });
    const stack = new SyncStack(app, {
      environmentName: 'quiet',
      runtimeConfig: config,
      aws: requireAwsSettings(config, 'test'),
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(12 hours)',
      ScheduleExpressionTimezone: 'America/New_York',
      State: 'DISABLED',
    });
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    // Nothing runs by itself, so "no success in 26 h" would be in ALARM for ever.
    const alarmed = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map(
      (alarm) => alarm.Properties.MetricName,
    );
    expect(alarmed.sort()).toEqual(['ExecutionsFailed', 'ExecutionsTimedOut']);
  });
});

describe('bin/app.ts', () => {
  it('stops with the problem named when the environment has no config file', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'cdk-app-test-'));
    outdirs.push(outdir);
    const result = spawnSync('npx', ['tsx', 'bin/app.ts'], {
      encoding: 'utf8',
      env: {
        ...process.env,
        CDK_CONTEXT_JSON: JSON.stringify({ env: 'staging' }),
        CDK_OUTDIR: outdir,
      },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      '-c env=staging: there is no config/staging.json; environments: dev, example, prod.',
    );
  });
});
