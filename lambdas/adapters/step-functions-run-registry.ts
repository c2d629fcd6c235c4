/**
 * RunRegistry over Step Functions: DescribeExecution on the one execution holding the run lease.
 *
 * Its reference calls it eventually consistent too ("This operation is eventually consistent.
 * The results are best effort and may not reflect very recent updates and changes.",
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html), so
 * it is used only where a late answer is safe: an execution's status leaves RUNNING once, for
 * SUCCEEDED, FAILED, TIMED_OUT or ABORTED, so an answer that lags can only say RUNNING (the run
 * waits) or that the execution does not exist yet (`unknown`, which the run also treats as
 * holding the lease). Who holds the lease is decided by Aurora alone.
 */
import {
  DescribeExecutionCommand,
  ExecutionDoesNotExist,
  type SFNClient,
} from '@aws-sdk/client-sfn';
import type { ExecutionStatus, RunRegistry } from '../pipeline/deps';

export class StepFunctionsRunRegistry implements RunRegistry {
  constructor(private readonly sfn: SFNClient) {}

  async executionStatus(executionArn: string): Promise<ExecutionStatus> {
    try {
      const execution = await this.sfn.send(new DescribeExecutionCommand({ executionArn }));
      return execution.status === 'RUNNING' ? 'running' : 'ended';
    } catch (error) {
      if (error instanceof ExecutionDoesNotExist) return 'unknown';
      throw error;
    }
  }
}
