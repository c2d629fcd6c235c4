/**
 * Starting a run in AWS by hand and following it: the logic behind `npm run trigger`. Kept
 * apart from the command line so it is tested with a mocked Step Functions client.
 */
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  type SFNClient,
  StartExecutionCommand,
  type StartExecutionCommandOutput,
  StateMachineDoesNotExist,
} from '@aws-sdk/client-sfn';
import { pathText } from '../lambdas/core/config-fields';
import { ConfigError } from '../lambdas/core/errors';
import type { RunRequest } from '../lambdas/pipeline/request';
import { blockerLine, STEP_INPUTS } from '../lambdas/pipeline/state';

/** What "Check locks on the live tables" leaves in the state, read as the next lock step reads it. */
const LOCK_CHECK = STEP_INPUTS.gate.pick({ locks: true });

/**
 * Starts an execution of `stateMachineArn` named `name`. A state machine that does not exist
 * (StartExecution's StateMachineDoesNotExist,
 * https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html) is
 * an environment not deployed yet, in that account and region: said so, with the command.
 */
export async function startRun(
  sfn: SFNClient,
  stateMachineArn: string,
  request: Partial<RunRequest>,
  name: string,
  environment: string,
): Promise<string> {
  let started: StartExecutionCommandOutput;
  try {
    started = await sfn.send(
      new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(request) }),
    );
  } catch (error) {
    if (!(error instanceof StateMachineDoesNotExist)) throw error;
    const [, , , region, account] = stateMachineArn.split(':');
    throw new ConfigError(
      `the state machine ${stateMachineArn} does not exist in account ${account}, region ${region}: deploy environment ${environment} first (npx cdk deploy -c env=${environment}), with credentials of that account.`,
      { cause: error },
    );
  }
  if (!started.executionArn) throw new Error('Step Functions returned no execution ARN');
  return started.executionArn;
}

export interface FollowResult {
  readonly status: string;
  readonly output: unknown;
  readonly error: string | null;
  readonly cause: string | null;
}

/** The lines a person wants to see for one history event, if any. */
export function describeEvent(event: HistoryEvent): string[] {
  if (event.type === 'TaskStateEntered' || event.type === 'MapStateEntered') {
    return [`▶ ${event.stateEnteredEventDetails?.name}`];
  }
  if (
    event.type === 'TaskStateExited' &&
    event.stateExitedEventDetails?.name === 'Check locks on the live tables'
  ) {
    const state = LOCK_CHECK.safeParse(JSON.parse(event.stateExitedEventDetails.output ?? '{}'));
    const issue = state.error?.issues[0];
    if (issue) {
      return [
        `  (cannot show this lock check: ${pathText(['$', ...issue.path])}: ${issue.message}; is the deployed pipeline of another version than this checkout? See the execution in the Step Functions console.)`,
      ];
    }
    const locks = state.data?.locks;
    if (locks?.decision === 'wait') {
      return [
        `  waiting ${Math.round(locks.waitedSeconds)} s for locks; blocked by:`,
        ...locks.blockers.map((blocker) => `    - ${blockerLine(blocker)}`),
      ];
    }
  }
  if (event.type === 'ExecutionFailed') {
    return [
      `✗ ${event.executionFailedEventDetails?.error}: ${event.executionFailedEventDetails?.cause}`,
    ];
  }
  if (event.type === 'ExecutionSucceeded') return ['✓ the run succeeded'];
  return [];
}

export async function followRun(
  sfn: SFNClient,
  executionArn: string,
  options: {
    readonly onLine: (line: string) => void;
    readonly sleep?: (ms: number) => Promise<void>;
    readonly pollMs?: number;
  },
): Promise<FollowResult> {
  const sleep =
    options.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  let seen = 0;
  for (;;) {
    let nextToken: string | undefined;
    const events: HistoryEvent[] = [];
    do {
      const page = await sfn.send(
        new GetExecutionHistoryCommand({ executionArn, nextToken, maxResults: 1000 }),
      );
      events.push(...(page.events ?? []));
      nextToken = page.nextToken;
    } while (nextToken);
    for (const event of events.slice(seen))
      for (const line of describeEvent(event)) options.onLine(line);
    seen = Math.max(seen, events.length);
    const execution = await sfn.send(new DescribeExecutionCommand({ executionArn }));
    if (
      execution.status &&
      execution.status !== 'RUNNING' &&
      execution.status !== 'PENDING_REDRIVE'
    ) {
      return {
        status: execution.status,
        output: execution.output ? JSON.parse(execution.output) : null,
        error: execution.error ?? null,
        cause: execution.cause ?? null,
      };
    }
    await sleep(options.pollMs ?? 5000);
  }
}
