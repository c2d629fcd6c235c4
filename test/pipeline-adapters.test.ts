import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, ExecutionDoesNotExist, SFNClient } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../lambdas/adapters/s3-object-store';
import { SnsNotifier } from '../lambdas/adapters/sns-notifier';
import { StepFunctionsRunRegistry } from '../lambdas/adapters/step-functions-run-registry';

const s3 = mockClient(S3Client);
const sfn = mockClient(SFNClient);
const sns = mockClient(SNSClient);

beforeEach(() => {
  s3.reset();
  sfn.reset();
  sns.reset();
});

describe('S3ObjectStore', () => {
  const store = new S3ObjectStore(new S3Client({ region: 'eu-west-1' }));

  it('reads and writes text objects', async () => {
    s3.on(GetObjectCommand, { Bucket: 'b', Key: 'runs/r1/run.json' }).resolves({
      // the part of the SDK's stream mixin the store uses
      Body: { transformToString: async () => '{"runId":"r1"}' } as never,
    });
    expect(await store.getText('b', 'runs/r1/run.json')).toBe('{"runId":"r1"}');
    await store.putText('b', 'runs/r1/unload.json', '{}');
    expect(s3.commandCalls(PutObjectCommand)[0]!.args[0].input).toMatchObject({
      Bucket: 'b',
      Key: 'runs/r1/unload.json',
      Body: '{}',
    });
  });

  it('deletes every page of objects under a prefix and counts them', async () => {
    s3.on(ListObjectsV2Command)
      .resolvesOnce({
        Contents: [{ Key: 'runs/r1/a' }, { Key: 'runs/r1/b' }],
        IsTruncated: true,
        NextContinuationToken: 't2',
      })
      .resolvesOnce({ Contents: [{ Key: 'runs/r1/c' }], IsTruncated: false });
    s3.on(DeleteObjectsCommand).resolves({});
    expect(await store.deletePrefix('b', 'runs/r1/')).toBe(3);
    expect(s3.commandCalls(ListObjectsV2Command)[1]!.args[0].input.ContinuationToken).toBe('t2');
    expect(
      s3
        .commandCalls(DeleteObjectsCommand)
        .flatMap((call) => call.args[0].input.Delete!.Objects!.map((object) => object.Key)),
    ).toEqual(['runs/r1/a', 'runs/r1/b', 'runs/r1/c']);
  });

  it('fails when S3 reports objects it could not delete, naming one', async () => {
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'runs/r1/a' }] });
    s3.on(DeleteObjectsCommand).resolves({
      Errors: [{ Key: 'runs/r1/a', Message: 'Access Denied' }],
    });
    await expect(store.deletePrefix('b', 'runs/r1/')).rejects.toThrow(/runs\/r1\/a: Access Denied/);
  });
});

describe('StepFunctionsRunRegistry', () => {
  const registry = new StepFunctionsRunRegistry(new SFNClient({ region: 'eu-west-1' }));
  const arn = 'arn:aws:states:eu-west-1:123456789012:execution:sync-prod:run-a';

  it('says whether the execution holding the lease is still running', async () => {
    const statuses = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED'] as const;
    let described = sfn.on(DescribeExecutionCommand);
    for (const status of statuses) described = described.resolvesOnce({ status });
    const answers = [];
    for (const _ of statuses) answers.push(await registry.executionStatus(arn));
    expect(answers).toEqual(['running', 'ended', 'ended', 'ended', 'ended']);
    expect(sfn.commandCalls(DescribeExecutionCommand)[0]!.args[0].input).toEqual({
      executionArn: arn,
    });
  });

  it('reports an execution Step Functions does not know as unknown, not ended', async () => {
    sfn
      .on(DescribeExecutionCommand)
      .rejects(new ExecutionDoesNotExist({ message: 'Execution Does Not Exist', $metadata: {} }));
    expect(await registry.executionStatus(arn)).toBe('unknown');
  });
});

describe('SnsNotifier', () => {
  it('publishes to its topic with a one-line subject within SNS limits', async () => {
    sns.on(PublishCommand).resolves({ MessageId: 'm1' });
    const notifier = new SnsNotifier(
      new SNSClient({ region: 'eu-west-1' }),
      'arn:aws:sns:eu-west-1:1:t',
    );
    await notifier.notify(`sync failed\nin prod ${'x'.repeat(200)}`, 'details');
    const input = sns.commandCalls(PublishCommand)[0]!.args[0].input;
    expect(input.TopicArn).toBe('arn:aws:sns:eu-west-1:1:t');
    expect(input.Subject).not.toContain('\n');
    expect(input.Subject!.length).toBeLessThanOrEqual(100);
    expect(input.Message).toBe('details');
  });
});
