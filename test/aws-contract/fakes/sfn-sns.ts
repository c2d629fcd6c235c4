/**
 * Step Functions' ListExecutions and DescribeExecution (whether the run holding the run lease
 * is still going) over the executions the harness runs, and SNS Publish recording what was sent.
 */
import {
  type DescribeExecutionCommandInput,
  type DescribeExecutionCommandOutput,
  ExecutionDoesNotExist,
  type ExecutionListItem,
  type ListExecutionsCommandInput,
  type ListExecutionsCommandOutput,
  SFNServiceException,
  StateMachineDoesNotExist,
} from '@aws-sdk/client-sfn';
import {
  AuthorizationErrorException,
  InvalidParameterException,
  KMSAccessDeniedException,
  NotFoundException,
  type PublishCommandInput,
  type PublishCommandOutput,
} from '@aws-sdk/client-sns';
import type { Authorize, AwsPrincipal } from '../access';
import { AWS_LIMITS } from '../limits';
import { authorizeOrThrow, namedSdkError, sdkError } from './sdk-errors';

export class StepFunctionsFake {
  /** What ListExecutions reports, newest first; the harness adds and ends its own executions. */
  readonly executions: ExecutionListItem[] = [];

  constructor(
    private readonly authorize: Authorize,
    private readonly stateMachineArn: string,
  ) {}

  async listExecutions(
    principal: AwsPrincipal,
    input: ListExecutionsCommandInput,
  ): Promise<ListExecutionsCommandOutput> {
    authorizeOrThrow(
      this.authorize,
      principal,
      { action: 'states:ListExecutions', resource: input.stateMachineArn ?? '' },
      (message) => namedSdkError(SFNServiceException, 'AccessDeniedException', message, 400),
    );
    if (input.stateMachineArn !== this.stateMachineArn) {
      throw sdkError(
        StateMachineDoesNotExist,
        `State Machine Does Not Exist: '${input.stateMachineArn}'`,
      );
    }
    // maxResults: default 100, at most 1000 (API_ListExecutions.html).
    const size = Math.min(input.maxResults || 100, 1000);
    const start = input.nextToken ? Number(input.nextToken) : 0;
    const matching = this.executions.filter(
      (execution) => !input.statusFilter || execution.status === input.statusFilter,
    );
    const page = matching.slice(start, start + size);
    return {
      $metadata: { httpStatusCode: 200 },
      executions: page,
      ...(start + size < matching.length ? { nextToken: String(start + size) } : {}),
    };
  }

  async describeExecution(
    principal: AwsPrincipal,
    input: DescribeExecutionCommandInput,
  ): Promise<DescribeExecutionCommandOutput> {
    const executionArn = input.executionArn ?? '';
    authorizeOrThrow(
      this.authorize,
      principal,
      { action: 'states:DescribeExecution', resource: executionArn },
      (message) => namedSdkError(SFNServiceException, 'AccessDeniedException', message, 400),
    );
    const execution = this.executions.find((item) => item.executionArn === executionArn);
    if (!execution) {
      throw sdkError(ExecutionDoesNotExist, `Execution Does Not Exist: '${executionArn}'`);
    }
    return {
      $metadata: { httpStatusCode: 200 },
      executionArn,
      stateMachineArn: execution.stateMachineArn,
      name: execution.name,
      status: execution.status,
      startDate: execution.startDate,
      ...(execution.stopDate ? { stopDate: execution.stopDate } : {}),
    };
  }
}

export interface PublishedMessage {
  readonly by: string;
  readonly topicArn: string;
  readonly subject?: string;
  readonly message: string;
}

export class SnsFake {
  readonly published: PublishedMessage[] = [];

  /**
   * `topicKeys`: the KMS key of each topic with server-side encryption, by topic ARN; the
   * publisher needs kms:GenerateDataKey and kms:Decrypt on it, which SNS uses as the caller
   * (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html).
   */
  constructor(
    private readonly authorize: Authorize,
    private readonly topicArns: readonly string[],
    private readonly topicKeys: Readonly<Record<string, string>> = {},
  ) {}

  async publish(
    principal: AwsPrincipal,
    input: PublishCommandInput,
  ): Promise<PublishCommandOutput> {
    const topicArn = input.TopicArn ?? '';
    authorizeOrThrow(
      this.authorize,
      principal,
      { action: 'sns:Publish', resource: topicArn },
      (message) => sdkError(AuthorizationErrorException, message, 403),
    );
    if (!this.topicArns.includes(topicArn)) {
      throw sdkError(NotFoundException, 'Topic does not exist', 404);
    }
    const keyArn = this.topicKeys[topicArn];
    if (keyArn !== undefined) {
      const region = topicArn.split(':')[3];
      for (const action of ['kms:GenerateDataKey', 'kms:Decrypt']) {
        // SNS reports a refused key as KMSAccessDeniedException, naming the KMS refusal.
        authorizeOrThrow(
          this.authorize,
          principal,
          {
            action,
            resource: keyArn,
            context: { 'kms:ViaService': `sns.${region}.amazonaws.com` },
          },
          (message) => sdkError(KMSAccessDeniedException, message, 400),
        );
      }
    }
    const { maxSubjectCharacters, maxMessageBytes } = AWS_LIMITS.sns;
    if (
      input.Subject !== undefined &&
      (input.Subject.length > maxSubjectCharacters || /[\r\n]/.test(input.Subject))
    ) {
      throw sdkError(InvalidParameterException, 'Invalid parameter: Subject');
    }
    if (Buffer.byteLength(input.Message ?? '') > maxMessageBytes) {
      throw sdkError(InvalidParameterException, 'Invalid parameter: Message too long');
    }
    this.published.push({
      by: principal.roleArn,
      topicArn,
      ...(input.Subject !== undefined ? { subject: input.Subject } : {}),
      message: input.Message ?? '',
    });
    return { $metadata: { httpStatusCode: 200 }, MessageId: String(this.published.length) };
  }
}
