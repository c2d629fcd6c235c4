/**
 * The policies of a CloudFormation template, intrinsics resolved, and the authorizer over them:
 * first on small templates with each construct CDK emits, then on the real stack synthesized
 * from the example configuration, checking what its roles may and may not do in AWS.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnResource } from 'aws-cdk-lib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, requireAwsSettings } from '../lambdas/core/config';
import type { PipelineFunctionName } from '../lib/function-access';
import { SyncStack } from '../lib/sync-stack';
import {
  AccessDeniedError,
  type Authorize,
  type AwsRequest,
  roleIdOf,
} from './aws-contract/access';
import { authorizerFromTemplate } from './aws-contract/iam/authorizer';
import {
  type CloudFormationTemplate,
  type LambdaFunction,
  policiesFromTemplate,
  type TemplatePolicies,
} from './aws-contract/iam/template';

const ENVIRONMENT = { account: '111122223333', region: 'eu-central-1', partition: 'aws' };

const EXAMPLE = JSON.parse(readFileSync('config/example.json', 'utf8')) as Record<string, unknown>;
const outdirs: string[] = [];
afterAll(() => {
  for (const outdir of outdirs) rmSync(outdir, { recursive: true, force: true });
});

interface Deployed {
  readonly policies: TemplatePolicies;
  readonly authorize: Authorize;
  readonly functionOf: (handler: PipelineFunctionName) => LambdaFunction;
}

/** The stack of the example configuration with `awsChanges`, and the authorizer over it. */
function synthesize(awsChanges: Record<string, unknown> = {}): Deployed {
  const config = parseConfig(
    { ...EXAMPLE, aws: { ...(EXAMPLE.aws as Record<string, unknown>), ...awsChanges } },
    'test',
  );
  const aws = requireAwsSettings(config, 'test');
  const outdir = mkdtempSync(join(tmpdir(), 'aws-iam-template-test-'));
  outdirs.push(outdir);
  // As local/run/definition.ts: no bundling and no CloudFormation validation, which take long
  // and change no policy.
  const app = new App({
    outdir,
    builtinCloudFormationValidation: false,
    context: { 'aws:cdk:bundling-stacks': [] },
  });
  const stack = new SyncStack(app, { environmentName: 'test', runtimeConfig: config, aws });
  const template = app.synth().getStackByName(stack.stackName).template as CloudFormationTemplate;
  const environment = { account: aws.account, region: aws.region, partition: 'aws' };
  const policies = policiesFromTemplate(template, environment);
  return {
    policies,
    authorize: authorizerFromTemplate(template, environment),
    functionOf: (handler) =>
      policies.functions[
        stack.getLogicalId(stack.sync.functions[handler].node.defaultChild as CfnResource)
      ]!,
  };
}

/** `allowed`, or why the request was refused. */
function verdict(authorize: Authorize, roleArn: string, request: AwsRequest): string {
  try {
    authorize({ roleArn }, request);
  } catch (error) {
    if (error instanceof AccessDeniedError) return error.why;
    throw error;
  }
  return 'allowed';
}

describe('policiesFromTemplate', () => {
  const template: CloudFormationTemplate = {
    Resources: {
      Data: { Type: 'AWS::S3::Bucket', Properties: {} },
      Named: { Type: 'AWS::S3::Bucket', Properties: { BucketName: 'given-name' } },
      Key: { Type: 'AWS::KMS::Key', Properties: { KeyPolicy: { Statement: [] } } },
      Worker: {
        Type: 'AWS::IAM::Role',
        Properties: {
          Path: '/service/',
          Policies: [
            {
              PolicyName: 'inline',
              PolicyDocument: {
                Statement: [
                  {
                    Effect: 'Allow',
                    Action: 's3:GetObject',
                    // biome-ignore lint/suspicious/noTemplateCurlyInString: Fn::Sub's syntax
                    Resource: { 'Fn::Sub': 'arn:${AWS::Partition}:s3:::${Data}/in/*' },
                  },
                ],
              },
            },
          ],
          ManagedPolicyArns: [{ Ref: 'Shared' }],
        },
      },
      Shared: {
        Type: 'AWS::IAM::ManagedPolicy',
        Properties: {
          PolicyDocument: {
            Statement: [
              {
                Effect: 'Allow',
                Action: 'kms:Decrypt',
                Resource: { 'Fn::GetAtt': 'Key.Arn' },
              },
            ],
          },
        },
      },
      Extra: {
        Type: 'AWS::IAM::Policy',
        Properties: {
          PolicyName: 'extra',
          Roles: [{ Ref: 'Worker' }],
          PolicyDocument: {
            Statement: [
              {
                Effect: 'Allow',
                Action: 's3:PutObject',
                Resource: {
                  'Fn::Join': [
                    '',
                    [
                      { 'Fn::GetAtt': ['Named', 'Arn'] },
                      '/',
                      { 'Fn::Select': [1, { 'Fn::Split': [',', 'a,out,c'] }] },
                      '/*',
                    ],
                  ],
                },
              },
            ],
          },
        },
      },
      NamedPolicy: {
        Type: 'AWS::S3::BucketPolicy',
        Properties: {
          Bucket: { Ref: 'Named' },
          PolicyDocument: {
            Statement: [
              {
                Effect: 'Deny',
                Principal: { AWS: '*' },
                Action: 's3:*',
                // biome-ignore lint/suspicious/noTemplateCurlyInString: Fn::Sub's syntax
                Resource: { 'Fn::Sub': ['${Arn}/*', { Arn: { 'Fn::GetAtt': ['Named', 'Arn'] } }] },
                Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              },
            ],
          },
        },
      },
      Fn: {
        Type: 'AWS::Lambda::Function',
        Properties: {
          Role: { 'Fn::GetAtt': ['Worker', 'Arn'] },
          Environment: {
            Variables: { BUCKET: { Ref: 'Data' }, KEY: { 'Fn::GetAtt': ['Key', 'Arn'] } },
          },
        },
      },
    },
  };
  const workerArn = 'arn:aws:iam::111122223333:role/service/worker';

  it('resolves each role policy, bucket and key policy, and function to concrete ARNs', () => {
    const policies = policiesFromTemplate(template, ENVIRONMENT);
    expect(Object.keys(policies.roles)).toEqual([workerArn]);
    expect(policies.roles[workerArn]!.policies.map((policy) => policy.Statement)).toEqual([
      [{ Effect: 'Allow', Action: 's3:GetObject', Resource: 'arn:aws:s3:::data/in/*' }],
      [
        {
          Effect: 'Allow',
          Action: 'kms:Decrypt',
          Resource: 'arn:aws:kms:eu-central-1:111122223333:key/key',
        },
      ],
      [{ Effect: 'Allow', Action: 's3:PutObject', Resource: 'arn:aws:s3:::given-name/out/*' }],
    ]);
    expect(Object.keys(policies.bucketPolicies)).toEqual(['given-name']);
    expect(policies.bucketPolicies['given-name']!.Statement).toMatchObject([
      { Resource: 'arn:aws:s3:::given-name/*' },
    ]);
    expect(Object.keys(policies.keyPolicies)).toEqual([
      'arn:aws:kms:eu-central-1:111122223333:key/key',
    ]);
    expect(policies.functions.Fn).toEqual({
      arn: 'arn:aws:lambda:eu-central-1:111122223333:function:fn',
      roleArn: workerArn,
      environment: { BUCKET: 'data', KEY: 'arn:aws:kms:eu-central-1:111122223333:key/key' },
    });
  });

  it('refuses what it cannot resolve, naming it', () => {
    const withRole = (properties: Record<string, unknown>): CloudFormationTemplate => ({
      Resources: { Role: { Type: 'AWS::IAM::Role', Properties: properties } },
    });
    expect(() =>
      policiesFromTemplate(
        withRole({
          ManagedPolicyArns: ['arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'],
        }),
        ENVIRONMENT,
      ),
    ).toThrow(
      /managed policy .*AWSLambdaBasicExecutionRole, whose document the evaluator does not have/,
    );
    expect(() =>
      policiesFromTemplate(
        withRole({
          Policies: [
            { PolicyDocument: { Statement: [{ Resource: { 'Fn::ImportValue': 'other-stack' } }] } },
          ],
        }),
        ENVIRONMENT,
      ),
    ).toThrow(/intrinsic function Fn::ImportValue is not resolved/);
    expect(() =>
      policiesFromTemplate(
        withRole({
          Policies: [{ PolicyDocument: { Statement: [{ Resource: { Ref: 'Nothing' } }] } }],
        }),
        ENVIRONMENT,
      ),
    ).toThrow(/the template has no resource Nothing/);
    expect(() =>
      policiesFromTemplate(
        withRole({
          Policies: [
            {
              PolicyDocument: {
                Statement: [
                  {
                    Effect: 'Allow',
                    Action: 's3:GetObject',
                    Resource: '*',
                    Condition: { IpAddress: { 'aws:SourceIp': '203.0.113.0/24' } },
                  },
                ],
              },
            },
          ],
        }),
        ENVIRONMENT,
      ),
    ).toThrow(/a policy of role Role, statement 0: condition operator IpAddress is not supported/);
  });
});

describe('the synthesized stack, through the authorizer', () => {
  let deployed: Deployed;
  let roleOf: (handler: PipelineFunctionName) => string;
  let unloadRole: string;
  let auroraImportRole: string;
  /** A function's resolved environment: the names the handlers are configured with. */
  let names: Readonly<Record<string, string>>;

  beforeAll(() => {
    deployed = synthesize();
    const { policies, functionOf } = deployed;
    roleOf = (handler) => functionOf(handler).roleArn;
    names = functionOf('start-unload').environment;
    unloadRole = names.UNLOAD_ROLE_ARN!;
    const importRole = Object.values(policies.roles).find((role) =>
      role.logicalId.startsWith('SyncAuroraImportRole'),
    );
    auroraImportRole = importRole!.arn;
  });

  const outcome = (roleArn: string, request: AwsRequest) =>
    verdict(deployed.authorize, roleArn, request);
  const object = (key: string) => `arn:aws:s3:::${names.RUN_BUCKET}/${key}`;
  const bucket = () => `arn:aws:s3:::${names.RUN_BUCKET}`;

  it('lets start-unload and check-unload submit and poll Redshift statements as one role', () => {
    expect(roleOf('check-unload')).toBe(roleOf('start-unload'));
    const cluster = 'arn:aws:redshift:eu-west-1:123456789012:cluster:analytics';
    expect(
      outcome(roleOf('start-unload'), {
        action: 'redshift-data:BatchExecuteStatement',
        resource: cluster,
      }),
    ).toBe('allowed');
    expect(
      outcome(roleOf('check-unload'), { action: 'redshift-data:DescribeStatement', resource: '*' }),
    ).toBe('allowed');
    expect(
      outcome(roleOf('swap-tables'), {
        action: 'redshift-data:BatchExecuteStatement',
        resource: cluster,
      }),
    ).toBe('implicit deny');
  });

  it('lets the Redshift role call on its own Data API sessions, which name no cluster ("*")', () => {
    const role = roleOf('fail-run');
    expect(role).toBe(roleOf('start-unload'));
    const onSession = (owner: string): AwsRequest => ({
      action: 'redshift-data:BatchExecuteStatement',
      resource: '*',
      context: { 'redshift-data:session-owner-iam-userid': owner },
    });
    // Opened by start-unload's session of the role, used by fail-run's.
    expect(outcome(role, onSession(`${roleIdOf(role)}:start-unload`))).toBe('allowed');
    expect(outcome(role, onSession(`${roleIdOf(roleOf('swap-tables'))}:swap-tables`))).toBe(
      'implicit deny',
    );
    expect(outcome(role, { action: 'redshift-data:BatchExecuteStatement', resource: '*' })).toBe(
      'implicit deny',
    );
    expect(outcome(roleOf('swap-tables'), onSession(`${roleIdOf(role)}:start-unload`))).toBe(
      'implicit deny',
    );
  });

  it('lets start-unload delete run files only under runs/', () => {
    const role = roleOf('start-unload');
    expect(
      outcome(role, { action: 's3:DeleteObject', resource: object('runs/r1/orders/0000_part_00') }),
    ).toBe('allowed');
    expect(outcome(role, { action: 's3:DeleteObject', resource: object('other/file') })).toBe(
      'implicit deny',
    );
    expect(outcome(role, { action: 's3:DeleteObject', resource: object('runsx/file') })).toBe(
      'implicit deny',
    );
  });

  it('lets the pipeline list the bucket only under the runs/ prefix', () => {
    const role = roleOf('finish-run');
    const list = (prefix?: string): AwsRequest => ({
      action: 's3:ListBucket',
      resource: bucket(),
      ...(prefix === undefined ? {} : { context: { 's3:prefix': prefix } }),
    });
    expect(outcome(role, list('runs/r1/'))).toBe('allowed');
    expect(outcome(role, list('other/'))).toBe('implicit deny');
    expect(outcome(role, list())).toBe('implicit deny');
  });

  it('lets Redshift UNLOAD write run files and encrypt them with the key', () => {
    expect(
      outcome(unloadRole, { action: 's3:PutObject', resource: object('runs/r1/t/0000_part_00') }),
    ).toBe('allowed');
    expect(
      outcome(unloadRole, { action: 'kms:GenerateDataKey', resource: names.KMS_KEY_ARN! }),
    ).toBe('allowed');
    expect(outcome(unloadRole, { action: 's3:PutObject', resource: object('elsewhere/x') })).toBe(
      'implicit deny',
    );
    expect(outcome(unloadRole, { action: 's3:DeleteObject', resource: object('runs/r1/x') })).toBe(
      'implicit deny',
    );
  });

  it('lets Aurora read run files and decrypt them, but not write', () => {
    expect(
      outcome(auroraImportRole, {
        action: 's3:GetObject',
        resource: object('runs/r1/t/0000_part_00'),
      }),
    ).toBe('allowed');
    expect(outcome(auroraImportRole, { action: 'kms:Decrypt', resource: names.KMS_KEY_ARN! })).toBe(
      'allowed',
    );
    expect(
      outcome(auroraImportRole, { action: 'kms:GenerateDataKey', resource: names.KMS_KEY_ARN! }),
    ).toBe('implicit deny');
  });

  it('denies every role a request to the run bucket over plain HTTP, by the bucket policy', () => {
    expect(
      outcome(unloadRole, {
        action: 's3:PutObject',
        resource: object('runs/r1/t/0000_part_00'),
        context: { 'aws:SecureTransport': 'false' },
      }),
    ).toBe('explicit deny');
  });

  it('lets fail-run publish the alarm, which the others may not', () => {
    const publish = { action: 'sns:Publish', resource: names.ALARM_TOPIC_ARN! };
    expect(outcome(roleOf('fail-run'), publish)).toBe('allowed');
    expect(outcome(roleOf('finish-run'), publish)).toBe('implicit deny');
    expect(
      outcome(roleOf('fail-run'), { ...publish, context: { 'aws:SecureTransport': 'false' } }),
    ).toBe('explicit deny');
  });

  it('refuses a role the stack does not define, as an implicit deny with AWS wording', () => {
    const stranger = 'arn:aws:iam::123456789012:role/unrelated';
    const request = { action: 's3:GetObject', resource: object('runs/r1/t/0000_part_00') };
    expect(() => deployed.authorize({ roleArn: stranger }, request)).toThrow(
      `User: ${stranger} is not authorized to perform: s3:GetObject on resource: ${request.resource} because no identity-based or resource-based policy allows it`,
    );
    expect(outcome(stranger, request)).toBe('implicit deny');
    expect(outcome(stranger, { action: 'kms:Decrypt', resource: names.KMS_KEY_ARN! })).toBe(
      'implicit deny',
    );
  });
});

describe('the stack with an existing UNLOAD role (aws.unloadRoleArn)', () => {
  const EXISTING = 'arn:aws:iam::123456789012:role/existing-unload';
  let deployed: Deployed;
  beforeAll(() => {
    deployed = synthesize({ unloadRoleArn: EXISTING });
  });

  it('lets the role CDK cannot change write run files through the bucket and key policies alone', () => {
    const { authorize, policies, functionOf } = deployed;
    const names = functionOf('start-unload').environment;
    expect(names.UNLOAD_ROLE_ARN).toBe(EXISTING);
    expect(policies.roles[EXISTING]).toBeUndefined();
    const object = (key: string) => `arn:aws:s3:::${names.RUN_BUCKET}/${key}`;
    expect(
      verdict(authorize, EXISTING, { action: 's3:PutObject', resource: object('runs/r1/t/0') }),
    ).toBe('allowed');
    expect(
      verdict(authorize, EXISTING, { action: 'kms:GenerateDataKey', resource: names.KMS_KEY_ARN! }),
    ).toBe('allowed');
    expect(
      verdict(authorize, EXISTING, { action: 's3:PutObject', resource: object('elsewhere/x') }),
    ).toBe('implicit deny');
    expect(
      verdict(authorize, EXISTING, { action: 's3:GetObject', resource: object('runs/r1/t/0') }),
    ).toBe('implicit deny');
  });
});
