/**
 * RedshiftAuroraSync in a stack of one's own, as the README shows: an existing bucket and key,
 * secrets as CDK objects, one of them under a customer-managed key.
 */
import { readFileSync } from 'node:fs';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { RedshiftAuroraSync } from '../lib/redshift-aurora-sync';
import { actionsOf, nagFindings, removeTestOutput, type Statement, testStack } from './support/cdk';

afterAll(removeTestOutput);

const KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100';

describe('RedshiftAuroraSync in a stack of its user', () => {
  it('uses an existing bucket and its key, and lets the steps decrypt the Aurora secret’s key', () => {
    const { app, stack } = testStack();
    const runKey = Key.fromKeyArn(stack, 'RunKey', KEY_ARN);
    const secretKey = new Key(stack, 'SecretKey', { enableKeyRotation: true });
    const sync = new RedshiftAuroraSync(stack, 'Sync', {
      environmentName: 'own',
      runtimeConfig: parseRuntimeConfig(
        JSON.parse(readFileSync('config/example.json', 'utf8')),
        'config/example.json',
      ),
      redshift: {
        workgroupName: 'wg-1',
        workgroupId: '0f0e0d0c-0b0a-0908-0706-050403020100',
        database: 'dev',
      },
      aurora: {
        clusterArn: 'arn:aws:rds:eu-west-1:123456789012:cluster:app',
        secret: Secret.fromSecretAttributes(stack, 'AuroraSecret', {
          secretCompleteArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:app-AbCdEf',
          encryptionKey: secretKey,
        }),
        database: 'app',
      },
      storage: {
        bucket: Bucket.fromBucketAttributes(stack, 'RunBucket', {
          bucketName: 'team-run-files',
          encryptionKey: runKey,
        }),
      },
    });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({ RUN_BUCKET: 'team-run-files', KMS_KEY_ARN: KEY_ARN }),
      },
    });
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: KEY_ARN });
    const secretKeyArn = {
      'Fn::GetAtt': [stack.getLogicalId(secretKey.node.defaultChild as never), 'Arn'],
    };
    const roleId = stack.getLogicalId(
      sync.functions['swap-tables'].role!.node.defaultChild as never,
    );
    const statements = Object.values(
      template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: roleId }] } }),
    ).flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
    expect(
      statements
        .filter((statement) => actionsOf(statement).includes('kms:Decrypt'))
        .flatMap((statement) => [statement.Resource].flat()),
    ).toEqual(expect.arrayContaining([secretKeyArn, KEY_ARN]));
    // The imported key's policy is its owner's: the synth says what it must allow.
    Annotations.fromStack(stack).hasWarning(
      '/PartTest/Sync/AlarmTopic',
      Match.stringLikeRegexp(
        'must allow cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey',
      ),
    );
    expect(nagFindings(app)).toEqual([]);
  });
});
