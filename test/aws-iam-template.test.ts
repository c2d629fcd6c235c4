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
import type { PipelineHandlerName } from '../lib/handlers';
import { SyncStack } from '../lib/sync-stack';
import { AccessDeniedError, type Authorize, type AwsRequest } from '../local/aws/access';
import { authorizerFromTemplate } from '../local/aws/iam/authorizer';
import {
  type CloudFormationTemplate,
  policiesFromTemplate,
  type TemplatePolicies,
} from '../local/aws/iam/template';

const ENVIRONMENT = { account: '111122223333', region: 'eu-central-1', partition: 'aws' };

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
  const EXAMPLE = JSON.parse(readFileSync('config/example.json', 'utf8')) as Record<
    string,
    unknown
  >;
  let outdir: string;
  let authorize: Authorize;
  let policies: TemplatePolicies;
  let roleOf: (handler: PipelineHandlerName) => string;
  let unloadRole: string;
  let auroraImportRole: string;
  /** A function's resolved environment: the names the handlers are configured with. */
  let names: Readonly<Record<string, string>>;

  beforeAll(() => {
    const config = parseConfig(EXAMPLE, 'test');
    const aws = requireAwsSettings(config, 'test');
    outdir = mkdtempSync(join(tmpdir(), 'aws-iam-template-test-'));
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
    policies = policiesFromTemplate(template, environment);
    authorize = authorizerFromTemplate(template, environment);
    const logicalIdOf = (construct: { node: { defaultChild?: unknown } }) =>
      stack.getLogicalId(construct.node.defaultChild as CfnResource);
    roleOf = (handler) => policies.functions[logicalIdOf(stack.sync.functions[handler])]!.roleArn;
    names = policies.functions[logicalIdOf(stack.sync.functions['start-unload'])]!.environment;
    unloadRole = names.UNLOAD_ROLE_ARN!;
    const importRole = Object.values(policies.roles).find((role) =>
      role.logicalId.startsWith('SyncAuroraImportRole'),
    );
    auroraImportRole = importRole!.arn;
  });
  afterAll(() => rmSync(outdir, { recursive: true, force: true }));

  const allowed = (roleArn: string, request: AwsRequest) => {
    authorize({ roleArn }, request);
    return true;
  };
  const refusal = (roleArn: string, request: AwsRequest) => {
    try {
      authorize({ roleArn }, request);
    } catch (error) {
      if (error instanceof AccessDeniedError) return error.why;
      throw error;
    }
    return 'allowed';
  };
  const object = (key: string) => `arn:aws:s3:::${names.RUN_BUCKET}/${key}`;
  const bucket = () => `arn:aws:s3:::${names.RUN_BUCKET}`;

  it('lets start-unload and check-unload submit and poll Redshift statements as one role', () => {
    expect(roleOf('check-unload')).toBe(roleOf('start-unload'));
    const cluster = 'arn:aws:redshift:eu-west-1:123456789012:cluster:analytics';
    expect(
      allowed(roleOf('start-unload'), {
        action: 'redshift-data:BatchExecuteStatement',
        resource: cluster,
      }),
    ).toBe(true);
    expect(
      allowed(roleOf('check-unload'), { action: 'redshift-data:DescribeStatement', resource: '*' }),
    ).toBe(true);
    expect(
      refusal(roleOf('swap-tables'), {
        action: 'redshift-data:BatchExecuteStatement',
        resource: cluster,
      }),
    ).toBe('implicit deny');
  });

  it('lets start-unload delete run files only under runs/', () => {
    const role = roleOf('start-unload');
    expect(
      allowed(role, { action: 's3:DeleteObject', resource: object('runs/r1/orders/0000_part_00') }),
    ).toBe(true);
    expect(refusal(role, { action: 's3:DeleteObject', resource: object('other/file') })).toBe(
      'implicit deny',
    );
    expect(refusal(role, { action: 's3:DeleteObject', resource: object('runsx/file') })).toBe(
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
    expect(allowed(role, list('runs/r1/'))).toBe(true);
    expect(refusal(role, list('other/'))).toBe('implicit deny');
    expect(refusal(role, list())).toBe('implicit deny');
  });

  it('lets Redshift UNLOAD write run files and encrypt them with the key', () => {
    expect(
      allowed(unloadRole, { action: 's3:PutObject', resource: object('runs/r1/t/0000_part_00') }),
    ).toBe(true);
    expect(
      allowed(unloadRole, { action: 'kms:GenerateDataKey', resource: names.KMS_KEY_ARN! }),
    ).toBe(true);
    expect(refusal(unloadRole, { action: 's3:PutObject', resource: object('elsewhere/x') })).toBe(
      'implicit deny',
    );
    expect(refusal(unloadRole, { action: 's3:DeleteObject', resource: object('runs/r1/x') })).toBe(
      'implicit deny',
    );
  });

  it('lets Aurora read run files and decrypt them, but not write', () => {
    expect(
      allowed(auroraImportRole, {
        action: 's3:GetObject',
        resource: object('runs/r1/t/0000_part_00'),
      }),
    ).toBe(true);
    expect(allowed(auroraImportRole, { action: 'kms:Decrypt', resource: names.KMS_KEY_ARN! })).toBe(
      true,
    );
    expect(
      refusal(auroraImportRole, { action: 'kms:GenerateDataKey', resource: names.KMS_KEY_ARN! }),
    ).toBe('implicit deny');
  });

  it('denies every role a request to the run bucket over plain HTTP, by the bucket policy', () => {
    expect(
      refusal(unloadRole, {
        action: 's3:PutObject',
        resource: object('runs/r1/t/0000_part_00'),
        context: { 'aws:SecureTransport': 'false' },
      }),
    ).toBe('explicit deny');
  });

  it('lets fail-run publish the alarm, which the others may not', () => {
    const publish = { action: 'sns:Publish', resource: names.ALARM_TOPIC_ARN! };
    expect(allowed(roleOf('fail-run'), publish)).toBe(true);
    expect(refusal(roleOf('finish-run'), publish)).toBe('implicit deny');
    expect(
      refusal(roleOf('fail-run'), { ...publish, context: { 'aws:SecureTransport': 'false' } }),
    ).toBe('explicit deny');
  });

  it('refuses a role the stack does not define, as an implicit deny with AWS wording', () => {
    const stranger = 'arn:aws:iam::123456789012:role/unrelated';
    const request = { action: 's3:GetObject', resource: object('runs/r1/t/0000_part_00') };
    expect(() => authorize({ roleArn: stranger }, request)).toThrow(
      `User: ${stranger} is not authorized to perform: s3:GetObject on resource: ${request.resource} because no identity-based or resource-based policy allows it`,
    );
    expect(refusal(stranger, request)).toBe('implicit deny');
    expect(refusal(stranger, { action: 'kms:Decrypt', resource: names.KMS_KEY_ARN! })).toBe(
      'implicit deny',
    );
  });
});
