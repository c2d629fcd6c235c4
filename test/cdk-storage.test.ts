import { Duration } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { RunStorage } from '../lib/run-storage';
import { nagFindings, removeTestOutput, testStack } from './support/cdk';

afterAll(removeTestOutput);

const KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100';

describe('RunStorage', () => {
  it('makes a rotated key, a KMS-encrypted private bucket expiring runs/ and its access logs bucket', () => {
    const { app, stack } = testStack();
    const storage = new RunStorage(stack, 'Storage');
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::KMS::Key', 1);
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    template.resourceCountIs('AWS::S3::Bucket', 2);
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          Match.objectLike({
            ServerSideEncryptionByDefault: {
              SSEAlgorithm: 'aws:kms',
              KMSMasterKeyID: { 'Fn::GetAtt': [Match.stringLikeRegexp('StorageKey'), 'Arn'] },
            },
          }),
        ],
      },
      LifecycleConfiguration: {
        Rules: Match.arrayWith([{ Prefix: 'runs/', ExpirationInDays: 7, Status: 'Enabled' }]),
      },
      LoggingConfiguration: Match.objectLike({ LogFilePrefix: 'run-bucket/' }),
    });
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      },
    });
    expect(storage.accessLogsBucket).toBeDefined();
    expect(stack.resolve(storage.runFilesArn)).toEqual({
      'Fn::Join': [
        '',
        [{ 'Fn::GetAtt': [expect.stringMatching(/^StorageRunBucket/), 'Arn'] }, '/runs/*'],
      ],
    });
    expect(nagFindings(app)).toEqual([]);
  });

  it('keeps run files as long as runFilesExpiration says', () => {
    const { stack } = testStack();
    new RunStorage(stack, 'Storage', { runFilesExpiration: Duration.days(30) });
    Template.fromStack(stack).hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([{ Prefix: 'runs/', ExpirationInDays: 30, Status: 'Enabled' }]),
      },
    });
  });

  it('uses an existing bucket and its key, creating neither bucket nor key', () => {
    const { app, stack } = testStack();
    const key = Key.fromKeyArn(stack, 'Key', KEY_ARN);
    const bucket = Bucket.fromBucketAttributes(stack, 'Existing', {
      bucketName: 'team-run-files',
      encryptionKey: key,
    });
    const storage = new RunStorage(stack, 'Storage', { bucket });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 0);
    template.resourceCountIs('AWS::KMS::Key', 0);
    expect(storage.key.keyArn).toBe(KEY_ARN);
    expect(storage.accessLogsBucket).toBeUndefined();
    expect(stack.resolve(storage.runFilesArn)).toEqual({
      'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':s3:::team-run-files/runs/*']],
    });
    expect(nagFindings(app)).toEqual([]);
  });

  it('makes a key for an existing bucket without one, or takes the one given', () => {
    const withoutKey = testStack();
    new RunStorage(withoutKey.stack, 'Storage', {
      bucket: Bucket.fromBucketName(withoutKey.stack, 'Existing', 'team-run-files'),
    });
    Template.fromStack(withoutKey.stack).resourceCountIs('AWS::KMS::Key', 1);

    const given = testStack();
    const storage = new RunStorage(given.stack, 'Storage', {
      encryptionKey: Key.fromKeyArn(given.stack, 'Key', KEY_ARN),
    });
    Template.fromStack(given.stack).resourceCountIs('AWS::KMS::Key', 0);
    expect(storage.key.keyArn).toBe(KEY_ARN);
  });

  it('sends access logs to a given bucket instead of making one', () => {
    const { stack } = testStack();
    const logs = Bucket.fromBucketName(stack, 'Logs', 'team-access-logs');
    new RunStorage(stack, 'Storage', { accessLogsBucket: logs });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::S3::Bucket', 1);
    template.hasResourceProperties('AWS::S3::Bucket', {
      LoggingConfiguration: {
        DestinationBucketName: 'team-access-logs',
        LogFilePrefix: 'run-bucket/',
      },
    });
  });

  it('refuses, naming the prop, what an existing bucket cannot take and expiries S3 cannot keep', () => {
    const { stack } = testStack();
    const bucket = Bucket.fromBucketName(stack, 'Existing', 'team-run-files');
    expect(
      () => new RunStorage(stack, 'A', { bucket, runFilesExpiration: Duration.days(3) }),
    ).toThrow(/PartTest\/A: runFilesExpiration applies to a new bucket only/);
    expect(
      () =>
        new RunStorage(stack, 'B', {
          bucket,
          accessLogsBucket: Bucket.fromBucketName(stack, 'Logs', 'logs'),
        }),
    ).toThrow(/PartTest\/B: accessLogsBucket applies to a new bucket only/);
    expect(() => new RunStorage(stack, 'C', { runFilesExpiration: Duration.hours(12) })).toThrow(
      /PartTest\/C: runFilesExpiration is 12 hours; S3 expires objects after whole days: give 1 to 3650 days/,
    );
  });
});
