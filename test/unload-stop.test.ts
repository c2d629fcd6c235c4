/**
 * Stopping what a failed run still runs in Redshift (stopRunStatements, called by fail-run)
 * over a scripted warehouse: the statements found by the run's name prefix as well as the one
 * the state names, the order of cancel, wait and ROLLBACK, the time limit, and that a failing
 * cancel never takes the place of the run's own error. The real services are in
 * test/aws-contract-cancel.test.ts (Data API fake) and test/emulator-local-warehouse.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { TransactionalSqlClient } from '../lambdas/core/sql-client';
import type { ListedStatement, StatementState, Warehouse } from '../lambdas/core/transfer/ports';
import type { LogFields, PipelineDeps } from '../lambdas/pipeline/deps';
import type { RunState, UnloadState } from '../lambdas/pipeline/state';
import { failRun } from '../lambdas/pipeline/steps/finish';
import { UnloadFailedError } from '../lambdas/pipeline/steps/unload';
import { CANCEL_WAIT_MS, stopRunStatements } from '../lambdas/pipeline/steps/unload-stop';

const UNLOAD: UnloadState = {
  finished: false,
  sessionId: 'session-1',
  batch: 1,
  batches: 3,
  statementId: 'call-2',
  status: 'STARTED',
  transactionStartedAt: '2026-01-01 00:00:00',
};

const RUNNING: StatementState = { state: 'running', status: 'STARTED' };
const ABORTED: StatementState = { state: 'failed', status: 'ABORTED', error: 'cancelled' };

/**
 * A warehouse whose unload call goes through `states` (one per describe) once cancelled, and
 * whose ROLLBACK finishes at once. `calls` lists what was asked of it, in order.
 */
function scripted(
  cancel: () => Promise<boolean>,
  states: StatementState[],
  listed: ListedStatement[] = [],
) {
  const calls: string[] = [];
  let described = 0;
  const warehouse: Warehouse = {
    submitBatch: () => Promise.reject(new Error('not used')),
    submitStatement: () => Promise.reject(new Error('not used')),
    fetchRows: () => Promise.reject(new Error('not used')),
    listStatements: async (prefix) => {
      calls.push(`list ${JSON.stringify(prefix)}`);
      return listed;
    },
    cancel: async (id) => {
      calls.push(`cancel ${id}`);
      return cancel();
    },
    describe: async (id) => {
      calls.push(`describe ${id}`);
      if (id === 'rollback-1') return { state: 'done', status: 'FINISHED' };
      return states[Math.min(described++, states.length - 1)]!;
    },
    submitInSession: async (statements, name, session) => {
      calls.push(
        `${statements.join('; ')} on ${JSON.stringify(session)} as ${JSON.stringify(name)}`,
      );
      return { statementId: 'rollback-1', sessionId: 'session-1' };
    },
  };
  return { warehouse, calls };
}

function depsWith(warehouse: Warehouse) {
  let clock = 0;
  const warnings: { message: string; fields?: LogFields }[] = [];
  const notices: string[] = [];
  const refuse = () => Promise.reject(new Error('Aurora is not part of this test'));
  const deps: PipelineDeps = {
    aurora: { query: refuse, withTransaction: refuse } as TransactionalSqlClient,
    warehouse,
    objects: { getText: refuse, putText: refuse, deletePrefix: refuse },
    runs: { executionStatus: async () => 'unknown' },
    notifier: { notify: async (_subject, message) => void notices.push(message) },
    log: { info: () => {}, warn: (message, fields) => void warnings.push({ message, fields }) },
    metrics: { record: () => {} },
    settings: {
      environment: 'test',
      bucket: 'bucket',
      unloadRoleArn: 'arn:aws:iam::1:role/u',
      region: 'eu-west-1',
    },
    sleep: async (ms) => {
      clock += ms;
    },
    now: () => clock,
  };
  return { deps, warnings, notices };
}

const LIST = 'list "redshift-aurora-sync r-1 "';
const ROLLBACK = 'ROLLBACK on {"sessionId":"session-1"} as "redshift-aurora-sync r-1 rollback"';

describe('stopRunStatements', () => {
  it('cancels the running call, waits for it to end, then rolls the session back', async () => {
    const { warehouse, calls } = scripted(async () => true, [RUNNING, RUNNING, ABORTED]);
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', UNLOAD)).toEqual({
      cancelled: ['call-2'],
      rolledBack: ['session-1'],
    });
    expect(calls).toEqual([
      LIST,
      'cancel call-2',
      'describe call-2',
      'describe call-2',
      'describe call-2',
      ROLLBACK,
      'describe rollback-1',
    ]);
  });

  it('rolls back a call that had already ended: its transaction is open all the same', async () => {
    const { warehouse, calls } = scripted(
      async () => false,
      [{ state: 'done', status: 'FINISHED' }],
    );
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', UNLOAD)).toEqual({
      cancelled: [],
      rolledBack: ['session-1'],
    });
    expect(calls).toContain(ROLLBACK);
  });

  it('cancels the call the state does not name (submitted just before the step failed), once', async () => {
    const { warehouse, calls } = scripted(
      async () => true,
      [ABORTED],
      [
        {
          statementId: 'call-3',
          name: 'redshift-aurora-sync r-1 unload 3/3',
          state: 'running',
          status: 'STARTED',
          sessionId: 'session-1',
        },
        {
          statementId: 'call-2',
          name: 'redshift-aurora-sync r-1 unload 2/3',
          state: 'running',
          status: 'STARTED',
          sessionId: 'session-1',
        },
      ],
    );
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', UNLOAD)).toEqual({
      cancelled: ['call-2', 'call-3'],
      rolledBack: ['session-1'],
    });
    expect(calls.filter((call) => call.startsWith('cancel'))).toEqual([
      'cancel call-2',
      'cancel call-3',
    ]);
    expect(calls.filter((call) => call.startsWith('ROLLBACK'))).toEqual([ROLLBACK]);
  });

  it('without a state, stops what the listing finds; a statement without a session is only cancelled', async () => {
    const { warehouse, calls } = scripted(
      async () => true,
      [ABORTED],
      [
        {
          statementId: 'columns-1',
          name: 'redshift-aurora-sync r-1 columns of sales.orders',
          state: 'running',
          status: 'SUBMITTED',
          sessionId: null,
        },
      ],
    );
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', null)).toEqual({
      cancelled: ['columns-1'],
      rolledBack: [],
    });
    expect(calls).toEqual([LIST, 'cancel columns-1', 'describe columns-1']);
  });

  it('without a state, rolls back the session of an unload call that had finished: its transaction waits for the next call', async () => {
    const { warehouse, calls } = scripted(
      async () => true,
      [],
      [
        {
          statementId: 'call-1',
          name: 'redshift-aurora-sync r-1 unload 1/2',
          state: 'done',
          status: 'FINISHED',
          sessionId: 'session-1',
        },
      ],
    );
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', null)).toEqual({
      cancelled: [],
      rolledBack: ['session-1'],
    });
    expect(calls).toEqual([LIST, ROLLBACK, 'describe rollback-1']);
  });

  it('leaves a session alone whose last unload call finished: it committed', async () => {
    const ended = (call: number): ListedStatement => ({
      statementId: `call-${call}`,
      name: `redshift-aurora-sync r-1 unload ${call}/2`,
      state: 'done',
      status: 'FINISHED',
      sessionId: 'session-1',
    });
    const { warehouse, calls } = scripted(async () => true, [], [ended(2), ended(1)]);
    expect(await stopRunStatements(depsWith(warehouse).deps, 'r-1', null)).toEqual({
      cancelled: [],
      rolledBack: [],
    });
    expect(calls).toEqual([LIST]);
  });

  it("leaves a session alone that check-unload's ROLLBACK ended: no cancel of the call $.unload names, no second ROLLBACK", async () => {
    const rolledBack = (state: 'done' | 'failed'): ListedStatement => ({
      statementId: 'rollback-0',
      name: 'redshift-aurora-sync r-1 rollback',
      state,
      status: state === 'done' ? 'FINISHED' : 'FAILED',
      sessionId: 'session-1',
    });
    const ended = scripted(async () => false, [], [rolledBack('done')]);
    expect(await stopRunStatements(depsWith(ended.warehouse).deps, 'r-1', UNLOAD)).toEqual({
      cancelled: [],
      rolledBack: [],
    });
    expect(ended.calls).toEqual([LIST]);
    // A ROLLBACK that failed ended nothing: the session is stopped as any other.
    const failed = scripted(
      async () => false,
      [{ state: 'done', status: 'FINISHED' }],
      [rolledBack('failed')],
    );
    expect(await stopRunStatements(depsWith(failed.warehouse).deps, 'r-1', UNLOAD)).toEqual({
      cancelled: [],
      rolledBack: ['session-1'],
    });
    expect(failed.calls).toContain(ROLLBACK);
    // Something of the run running on the session came after: it is cancelled and rolled back.
    const after = scripted(
      async () => true,
      [ABORTED],
      [
        rolledBack('done'),
        {
          statementId: 'call-3',
          name: 'redshift-aurora-sync r-1 unload 3/3',
          state: 'running',
          status: 'STARTED',
          sessionId: 'session-1',
        },
      ],
    );
    expect(await stopRunStatements(depsWith(after.warehouse).deps, 'r-1', null)).toEqual({
      cancelled: ['call-3'],
      rolledBack: ['session-1'],
    });
  });

  it('gives up when the cancelled call is still running after CANCEL_WAIT_MS, without a ROLLBACK the session would refuse', async () => {
    const { warehouse, calls } = scripted(async () => true, [RUNNING]);
    const stopping = stopRunStatements(depsWith(warehouse).deps, 'r-1', UNLOAD);
    await expect(stopping).rejects.toBeInstanceOf(UnloadFailedError);
    await expect(stopping).rejects.toThrow(
      `unload call 2 of 3 (statement call-2) was still STARTED ${CANCEL_WAIT_MS / 1000} s after it was cancelled, so its session session-1 was not rolled back`,
    );
    expect(calls.some((call) => call.startsWith('ROLLBACK'))).toBe(false);
  });

  it('still stops the call the state names when the listing is refused, and says so', async () => {
    const { warehouse, calls } = scripted(async () => true, [ABORTED]);
    warehouse.listStatements = () => Promise.reject(new Error('AccessDenied: ListStatements'));
    const stopping = stopRunStatements(depsWith(warehouse).deps, 'r-1', UNLOAD);
    await expect(stopping).rejects.toThrow(
      "could not list the run's statements: AccessDenied: ListStatements",
    );
    expect(calls).toEqual(['cancel call-2', 'describe call-2', ROLLBACK, 'describe rollback-1']);
  });
});

describe('fail-run with an unload still running', () => {
  const run: RunState = {
    runId: 'r-1',
    environment: 'test',
    startedAt: '2026-01-01T00:00:00Z',
    dryRun: false,
    pollIntervalSeconds: 10,
    maxWaitSeconds: 60,
    targets: ['public.orders'],
  };
  const error = { Error: 'States.Timeout', Cause: 'check-unload timed out' };

  it('reports the run`s own error when the cancel fails, and says the clean-up was incomplete', async () => {
    const { warehouse } = scripted(() => Promise.reject(new Error('AccessDenied')), [RUNNING]);
    const { deps, warnings, notices } = depsWith(warehouse);
    const outcome = await failRun({ run, unload: UNLOAD, error }, deps);
    expect(outcome).toMatchObject({ error: 'States.Timeout', cause: 'check-unload timed out' });
    expect(notices[0]).toContain('check-unload timed out');
    expect(warnings[0]!.fields!.cleanup).toEqual(
      expect.arrayContaining(['cancel the unload still running in Redshift: AccessDenied']),
    );
  });

  it('leaves an unload that finished alone: nothing of the run is running', async () => {
    const { warehouse, calls } = scripted(async () => true, [RUNNING]);
    const finished: UnloadState = {
      finished: true,
      sessionId: 'session-1',
      batches: 3,
      statementId: 'call-3',
      status: 'FINISHED',
      tables: [],
    };
    await failRun({ run, unload: finished, error }, depsWith(warehouse).deps);
    expect(calls).toEqual([LIST]);
  });
});
