import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  SFNClient,
  StartExecutionCommand,
  StateMachineDoesNotExist,
} from '@aws-sdk/client-sfn';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { followRun, startRun } from '../ops/trigger';
import { BLOCKER_BEFORE_POLICY, LOCK_CHECK } from './support/lock-states';

const sfn = mockClient(SFNClient);
const client = new SFNClient({ region: 'eu-west-1' });
const machine = 'arn:aws:states:eu-west-1:123456789012:stateMachine:redshift-aurora-sync-prod';
const execution = `${machine.replace(':stateMachine:', ':execution:')}:by-hand-1`;

beforeEach(() => sfn.reset());

const BLOCKER = {
  ...BLOCKER_BEFORE_POLICY,
  pid: 43,
  user: 'bob',
  application: 'report',
  state: 'active',
  reason: 'pid 43 (bob, report) runs a query on public.orders',
  blockerClass: 'activeQuery',
  atMaxWait: 'terminate',
  atMaxWaitException: null,
};
const LOCKS = { ...LOCK_CHECK, waitedSeconds: 61.2, blockers: [BLOCKER_BEFORE_POLICY] };

describe('startRun', () => {
  it('starts an execution with the request as its input', async () => {
    sfn.on(StartExecutionCommand).resolves({ executionArn: execution, startDate: new Date() });
    expect(
      await startRun(
        client,
        machine,
        { tables: ['public.orders'], dryRun: true },
        'by-hand-1',
        'prod',
      ),
    ).toBe(execution);
    expect(sfn.commandCalls(StartExecutionCommand)[0]!.args[0].input).toEqual({
      stateMachineArn: machine,
      name: 'by-hand-1',
      input: '{"tables":["public.orders"],"dryRun":true}',
    });
  });
  it('says to deploy the environment when its state machine does not exist', async () => {
    sfn.on(StartExecutionCommand).rejects(
      new StateMachineDoesNotExist({
        message: `State Machine Does Not Exist: '${machine}'`,
        $metadata: { httpStatusCode: 400 },
      }),
    );
    const started = startRun(client, machine, {}, 'by-hand-2', 'prod');
    await expect(started).rejects.toThrow(ConfigError);
    await expect(started).rejects.toThrow(
      `the state machine ${machine} does not exist in account 123456789012, region eu-west-1: deploy environment prod first (npx cdk deploy -c env=prod), with credentials of that account.`,
    );
  });
});

describe('followRun', () => {
  it('shows states and lock waits once each, until the execution ends', async () => {
    const entered = (id: number, name: string) => ({
      id,
      type: 'TaskStateEntered' as const,
      timestamp: new Date(),
      stateEnteredEventDetails: { name },
    });
    const waiting = {
      id: 3,
      type: 'TaskStateExited' as const,
      timestamp: new Date(),
      stateExitedEventDetails: {
        name: 'Check locks on the live tables',
        output: JSON.stringify({
          run: {},
          locks: { ...LOCKS, blockers: [BLOCKER_BEFORE_POLICY, BLOCKER] },
        }),
      },
    };
    sfn
      .on(GetExecutionHistoryCommand)
      .resolvesOnce({
        events: [entered(1, 'Prepare the run'), entered(2, 'Unload the tables from Redshift')],
      })
      .resolves({
        events: [
          entered(1, 'Prepare the run'),
          entered(2, 'Unload the tables from Redshift'),
          waiting,
          { id: 4, type: 'ExecutionSucceeded', timestamp: new Date() },
        ],
      });
    sfn
      .on(DescribeExecutionCommand)
      .resolvesOnce({
        status: 'RUNNING',
        executionArn: execution,
        stateMachineArn: machine,
        startDate: new Date(),
      })
      .resolves({
        status: 'SUCCEEDED',
        executionArn: execution,
        stateMachineArn: machine,
        startDate: new Date(),
        output: '{"status":"SUCCEEDED","tables":[]}',
      });
    const lines: string[] = [];
    const result = await followRun(client, execution, {
      onLine: (line) => lines.push(line),
      sleep: async () => {},
    });
    expect(result).toEqual({
      status: 'SUCCEEDED',
      output: { status: 'SUCCEEDED', tables: [] },
      error: null,
      cause: null,
    });
    expect(lines).toEqual([
      '▶ Prepare the run',
      '▶ Unload the tables from Redshift',
      '  waiting 61 s for locks; blocked by:',
      '    - an open transaction holds the table',
      '    - pid 43 (bob, report) runs a query on public.orders; at maxWaitSeconds: terminate',
      '✓ the run succeeded',
    ]);
  });

  it('says which field of a lock check it cannot read, and keeps following', async () => {
    sfn.on(GetExecutionHistoryCommand).resolves({
      events: [
        {
          id: 1,
          type: 'TaskStateExited',
          timestamp: new Date(),
          stateExitedEventDetails: {
            name: 'Check locks on the live tables',
            output: JSON.stringify({ locks: { ...LOCKS, blockers: 'pid 42' } }),
          },
        },
        { id: 2, type: 'ExecutionSucceeded', timestamp: new Date() },
      ],
    });
    sfn.on(DescribeExecutionCommand).resolves({
      status: 'SUCCEEDED',
      executionArn: execution,
      stateMachineArn: machine,
      startDate: new Date(),
    });
    const lines: string[] = [];
    expect(
      (await followRun(client, execution, { onLine: (line) => lines.push(line) })).status,
    ).toBe('SUCCEEDED');
    expect(lines).toEqual([
      '  (cannot show this lock check: $.locks.blockers: Invalid input: expected array, received string; is the deployed pipeline of another version than this checkout? See the execution in the Step Functions console.)',
      '✓ the run succeeded',
    ]);
  });

  it('reports a failed execution with its error and cause', async () => {
    sfn.on(GetExecutionHistoryCommand).resolves({
      events: [
        {
          id: 9,
          type: 'ExecutionFailed',
          timestamp: new Date(),
          executionFailedEventDetails: {
            error: 'LockWaitTimeoutError',
            cause: 'Gave up after 3600 s',
          },
        },
      ],
    });
    sfn.on(DescribeExecutionCommand).resolves({
      status: 'FAILED',
      executionArn: execution,
      stateMachineArn: machine,
      startDate: new Date(),
      error: 'LockWaitTimeoutError',
      cause: 'Gave up after 3600 s',
    });
    const lines: string[] = [];
    const result = await followRun(client, execution, { onLine: (line) => lines.push(line) });
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('LockWaitTimeoutError');
    expect(lines).toEqual(['✗ LockWaitTimeoutError: Gave up after 3600 s']);
  });
});
