/**
 * A run that fails just after a step submitted a Redshift call its state does not name,
 * through the AWS contract harness: "Check whether the unload finished" submitted the next call
 * of the session, or "Unload the tables from Redshift" its first, and then failed (here: the
 * service took the call but its answer was lost, as after a timeout). fail-run finds the call
 * by the run's statement names (ListStatements), cancels it and rolls the session back, so the
 * source tables are let go at once instead of after the session's keep-alive.
 *
 * The run has two tables: sales.docs has a bytea column, whose oversize count makes the first
 * call of the session (buildUnloadSession), and sales.orders, unloaded in the second call.
 * Locking one of them keeps the call that reads it running.
 */

import type {
  BatchExecuteStatementCommandInput,
  BatchExecuteStatementCommandOutput,
} from '@aws-sdk/client-redshift-data';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { STATE } from '../lib/pipeline-definition';
import type { AwsPrincipal } from './aws-contract/access';
import { AwsHarness, type HarnessRun, synthesizeStack } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { type FakeSessions, fakeSessionsOn } from './support/fake-sessions';

let ground: DatabasesAndBucket;
let source: pg.Client;
let sessions: FakeSessions;

const CONFIG = parseRuntimeConfig(
  {
    tables: [
      { source: 'sales.orders', target: 'public.orders', strategy: 'rename' },
      { source: 'sales.docs', target: 'public.docs', strategy: 'rename' },
    ],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract unseen-call test config',
);
const stack = synthesizeStack(CONFIG);
/** What the lost answer to the submitted call looks like to the caller. */
const LOST = 'the connection closed before the response arrived';

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-unseen');
  source = await ground.sourceDb.connect('test lock holder');
  sessions = await fakeSessionsOn(ground.sourceDb);
  await source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint, customer text);
    INSERT INTO sales.orders SELECT g, 'customer ' || g FROM generate_series(1, 30) g;
    CREATE TABLE sales.docs (id bigint, blob bytea);
    INSERT INTO sales.docs VALUES (1, '\\x00ff'), (2, NULL);
  `);
  await ground.target.query(`
    CREATE TABLE public.orders (id bigint, customer text);
    CREATE TABLE public.docs (id bigint, blob bytea);
    ALTER TABLE public.orders OWNER TO ${ground.targetDb.pipelineLogin.user};
    ALTER TABLE public.docs OWNER TO ${ground.targetDb.pipelineLogin.user};
  `);
});

/**
 * Runs the pipeline with `table` locked (or nothing locked: null); the BatchExecuteStatement
 * that `lose` picks is taken by the service (it runs, and waits for the lock, or finishes) but
 * its caller gets an error instead of the answer. Returns the run and the id of the call whose
 * answer was lost; `check` runs before the harness closes (closing ends the fake's sessions).
 */
async function loseAnswer(
  table: string | null,
  lose: (input: BatchExecuteStatementCommandInput) => boolean,
  check: (harness: AwsHarness, run: HarnessRun, lostId: string) => Promise<void>,
): Promise<void> {
  await source.query(table ? `BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE` : 'BEGIN');
  const harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    stack,
    waitTimeOverrides: { [STATE.waitForUnload]: 100 },
  });
  const fake = harness.redshiftData;
  const submit = fake.batchExecuteStatement.bind(fake);
  let lostId: string | undefined;
  fake.batchExecuteStatement = async (
    principal: AwsPrincipal,
    input: BatchExecuteStatementCommandInput,
  ): Promise<BatchExecuteStatementCommandOutput> => {
    const output = await submit(principal, input);
    if (lostId === undefined && lose(input)) {
      lostId = output.Id;
      if (table) await sessions.untilOneWaitsForLock();
      else await untilFinished(fake, principal, output.Id!);
      throw Object.assign(new Error(LOST), { name: 'TimeoutError' });
    }
    return output;
  };
  try {
    const run = await harness.run({});
    expect(lostId).toBeDefined();
    await check(harness, run, lostId!);
  } finally {
    await source.query('ROLLBACK');
    await harness.close();
  }
}

async function untilFinished(
  fake: AwsHarness['redshiftData'],
  principal: AwsPrincipal,
  statementId: string,
): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt += 1) {
    const { Status } = await fake.describeStatement(principal, { Id: statementId });
    if (Status === 'FINISHED') return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the unload call ${statementId} never finished`);
}

async function statusOf(harness: AwsHarness, statementId: string): Promise<string | undefined> {
  const described = await harness.redshiftData.describeStatement(
    { roleArn: harness.roleOf('start-unload') },
    { Id: statementId },
  );
  return described.Status;
}

describe('a run that fails right after submitting a call its state does not name', () => {
  it('check-unload submitted the next call: fail-run cancels that one, not only the finished call $.unload names, and rolls back', async () => {
    await loseAnswer(
      'sales.orders',
      (input) => input.SessionId !== undefined && /unload 2\/2$/.test(input.StatementName ?? ''),
      async (harness, run, lostId) => {
        expect(run.outcome).toMatchObject({
          status: 'FAILED',
          cause: expect.stringContaining(LOST),
        });
        const role = harness.roleOf('start-unload');
        // The first call (named by $.unload) had finished: nothing left to cancel there.
        expect(harness.redshiftData.cancels).toEqual([
          { statementId: expect.any(String), role, answer: 'ValidationException' },
          { statementId: lostId, role, answer: 'cancelled' },
        ]);
        expect(await statusOf(harness, lostId)).toBe('ABORTED');
        // No call waits for sales.orders any more, and the session holds no transaction open.
        expect(await sessions.now()).toEqual([{ state: 'idle', waiting: 'Client' }]);
        expect(JSON.stringify(harness.sns.published)).toContain(LOST);
      },
    );
  });

  it('start-unload submitted the first call: fail-run, with no $.unload, finds it, cancels it and rolls back', async () => {
    await loseAnswer(
      'sales.docs',
      (input) => input.SessionKeepAliveSeconds !== undefined,
      async (harness, run, lostId) => {
        expect(run.outcome).toMatchObject({
          status: 'FAILED',
          cause: expect.stringContaining(LOST),
        });
        const role = harness.roleOf('start-unload');
        expect(harness.roleOf('fail-run')).toBe(role);
        expect(harness.redshiftData.cancels).toEqual([
          { statementId: lostId, role, answer: 'cancelled' },
        ]);
        expect(await statusOf(harness, lostId)).toBe('ABORTED');
        expect(await sessions.now()).toEqual([{ state: 'idle', waiting: 'Client' }]);
        // Every statement the run submitted carries its id: column discovery, the unload
        // call, the ROLLBACK.
        const listed = await harness.redshiftData.listStatements(
          { roleArn: role },
          { StatementName: 'redshift-aurora-sync ', Status: 'ALL' },
        );
        const names = (listed.Statements ?? []).map((statement) => statement.StatementName);
        const runId = /^redshift-aurora-sync (\S+) /.exec(names[0] ?? '')?.[1];
        expect(runId).toBeDefined();
        expect(names.every((name) => name?.startsWith(`redshift-aurora-sync ${runId} `))).toBe(
          true,
        );
        expect(names).toEqual(
          expect.arrayContaining([
            `redshift-aurora-sync ${runId} columns of sales.orders`,
            `redshift-aurora-sync ${runId} columns of sales.docs`,
            `redshift-aurora-sync ${runId} unload 1/2`,
            `redshift-aurora-sync ${runId} rollback`,
          ]),
        );
      },
    );
  });

  it("start-unload's first call had finished: fail-run, with no $.unload and nothing running, rolls back the transaction it left open", async () => {
    await loseAnswer(
      null,
      (input) => input.SessionKeepAliveSeconds !== undefined,
      async (harness, run, lostId) => {
        expect(run.outcome).toMatchObject({
          status: 'FAILED',
          cause: expect.stringContaining(LOST),
        });
        expect(await statusOf(harness, lostId)).toBe('FINISHED');
        expect(harness.redshiftData.cancels).toEqual([]);
        // Without the ROLLBACK the session would sit 'idle in transaction', holding its locks
        // on the source tables for the rest of its keep-alive.
        expect(await sessions.now()).toEqual([{ state: 'idle', waiting: 'Client' }]);
      },
    );
  });
});
