/**
 * Blockers the table-level lock matrix cannot see: row locks in the way of a merge, and the
 * sessions a waiting attempt is stuck behind. The pipeline runs as its own non-superuser login
 * against sessions of a user role, as on Aurora.
 */
import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { inspectLocks, type LockTarget } from '../lambdas/core/locks/inspect';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import { sessionsBlocking } from '../lambdas/core/locks/waiting';
import {
  COLLISIONS_BEFORE_BLOCKER,
  gateBlockers,
  NO_HISTORY,
  recordBusyAttempt,
} from '../lambdas/core/swap/gate-decision';
import { freshDatabase, type TestDatabase } from './support/db';

const ACCOUNTS = { schema: 'public', name: 'accounts' };
/** What a merge into live takes on it. */
const MERGE: LockTarget[] = [
  { relation: ACCOUNTS, mode: 'RowExclusiveLock', includeDependentViews: false },
];
const USER = { user: 'locks_blockers_user', password: 'user' };
const GRACE = 0.5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let db: TestDatabase;
let pipeline: PgSqlClient;

beforeAll(async () => {
  db = await freshDatabase();
  const setup = await db.connect('setup');
  await setup.query(`
    CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL);
    INSERT INTO public.accounts SELECT g, 0 FROM generate_series(1, 10) g;
    DO $$ BEGIN CREATE ROLE ${USER.user} LOGIN PASSWORD '${USER.password}';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
    GRANT SELECT, UPDATE ON public.accounts TO ${USER.user};
    GRANT SELECT, UPDATE ON public.accounts TO ${db.pipelineLogin.user};
  `);
  await setup.end();
  pipeline = new PgSqlClient(await db.connect('redshift-aurora-sync gate', db.pipelineLogin));
});

const opened: pg.Client[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((client) => client.query('ROLLBACK')));
});

async function userTransaction(applicationName: string, sql: string): Promise<pg.Client> {
  const client = await db.connect(applicationName, USER);
  opened.push(client);
  await client.query('BEGIN');
  await client.query(sql);
  return client;
}

function pidOf(client: pg.Client): number {
  return (client as pg.Client & { processID: number }).processID;
}

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}

describe('blockers of a merge', () => {
  it('counts sessions sitting on row locks the merge needs, which make every attempt time out', async () => {
    const locker = await userTransaction(
      'row locker',
      'SELECT * FROM public.accounts WHERE id = 1 FOR UPDATE',
    );
    const writer = await userTransaction(
      'writer',
      'UPDATE public.accounts SET balance = 1 WHERE id = 2',
    );
    const reader = await userTransaction('reader', 'SELECT * FROM public.accounts');
    await sleep(600);

    // A merge's UPDATE of those rows waits for their transactions, not for a table lock.
    const attempt = await db.connect('attempt', db.pipelineLogin);
    await attempt.query(`SET lock_timeout = '200ms'`);
    await expect(
      attempt.query('UPDATE public.accounts SET balance = balance WHERE id IN (1, 2)'),
    ).rejects.toMatchObject({ code: '55P03' });

    const holders = await inspectLocks(pipeline, MERGE);
    const verdict = lockVerdict(holders, { graceSeconds: GRACE });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((b) => [b.holder.pid, b.holder.mode])).toEqual([
      [pidOf(locker), 'RowShareLock'],
      [pidOf(writer), 'RowExclusiveLock'],
    ]);
    for (const blocker of verdict.blockers) {
      expect(blocker.reason).toMatch(
        new RegExp(
          `^idleInTransaction: pid ${blocker.holder.pid} \\(user ${USER.user}, application "(row locker|writer)", from 127\\.0\\.0\\.1\\) has held ${blocker.holder.mode} on public\\.accounts for \\d\\.\\d s in an open transaction that is idle: ".+"; it may hold row locks the merge needs \\(our RowExclusiveLock does not conflict with its ${blocker.holder.mode}, but changing a row it locked waits until its transaction ends\\); end that transaction or set onMaxWait to terminate$`,
        ),
      );
    }
    expect(verdict.ignored).toEqual([
      { holder: expect.objectContaining({ pid: pidOf(reader) }), reason: 'does not conflict' },
    ]);
  });

  it('names whom a waiting attempt waits for, so the gate counts it despite grace after a few attempts', async () => {
    const locker = await userTransaction(
      'quick locker',
      'SELECT * FROM public.accounts WHERE id = 3 FOR UPDATE',
    );
    expect(await sessionsBlocking(pipeline, MERGE)).toEqual([]);

    const attempt = await db.connect('', db.pipelineLogin);
    opened.push(attempt);
    const attemptPid = pidOf(attempt);
    await attempt.query(`SET lock_timeout = '30s'`);
    await attempt.query('BEGIN');
    // Its failure is caught at once: it comes when the test cancels it, before the assertion.
    const waiting = attempt.query('UPDATE public.accounts SET balance = 3 WHERE id = 3').then(
      () => null,
      (error: Error) => error,
    );
    let blocking = await sessionsBlocking(pipeline, MERGE);
    await waitUntil(async () => {
      blocking = await sessionsBlocking(pipeline, MERGE);
      return blocking.length > 0;
    });
    expect(blocking).toEqual([
      {
        blockedPid: attemptPid,
        pid: pidOf(locker),
        user: USER.user,
        applicationName: 'quick locker',
        clientAddr: '127.0.0.1',
        state: 'idle in transaction',
        transactionAgeSeconds: expect.any(Number),
        queryAgeSeconds: expect.any(Number),
        transactionStartMicros: expect.stringMatching(/^\d{16}$/),
        query: 'SELECT * FROM public.accounts WHERE id = 3 FOR UPDATE',
      },
    ]);

    // The attempt times out (here: is cancelled) and rolls back, as a busy attempt does.
    await pipeline.query('SELECT pg_cancel_backend(:pid)', { pid: attemptPid });
    expect((await waiting)?.message).toMatch(/canceling statement/);
    await attempt.query('ROLLBACK');

    // Younger than a long grace it is ignored, until attempts have kept colliding with it:
    // busy attempts that were seen waiting for it count against it, as the gate records them.
    const holders = await inspectLocks(pipeline, MERGE);
    const lockerHolder = holders.find((holder) => holder.pid === pidOf(locker));
    const verdict = lockVerdict(holders, { graceSeconds: 60 });
    expect(verdict.safe).toBe(true);
    let history = NO_HISTORY;
    for (let attempt = 1; attempt <= COLLISIONS_BEFORE_BLOCKER; attempt += 1) {
      expect(gateBlockers(verdict, history)).toEqual([]);
      history = recordBusyAttempt(history, verdict, attempt, 1, 0.5, blocking);
    }
    expect(gateBlockers(verdict, history)).toEqual([
      {
        holder: lockerHolder,
        reason: expect.stringContaining(
          `but it held the lock through ${COLLISIONS_BEFORE_BLOCKER} swap attempts`,
        ),
      },
    ]);

    await locker.query('ROLLBACK');
  });

  it("reports an active statement's age to the pipeline's login, not an unknown time", async () => {
    const busy = await db.connect('long report', USER);
    opened.push(busy);
    await busy.query('BEGIN');
    const running = busy.query('SELECT count(*) FROM public.accounts CROSS JOIN pg_sleep(2)');
    await sleep(800);
    const holders = await inspectLocks(pipeline, [
      { relation: ACCOUNTS, mode: 'AccessExclusiveLock', includeDependentViews: false },
    ]);
    const [holder] = holders.filter((h) => h.pid === pidOf(busy));
    expect(holder).toMatchObject({ state: 'active', user: USER.user, ownSession: false });
    expect(holder!.transactionAgeSeconds).toBeGreaterThanOrEqual(0.8);
    expect(holder!.queryAgeSeconds).toBeGreaterThanOrEqual(0.8);
    const verdict = lockVerdict(holders, { graceSeconds: GRACE });
    if (verdict.safe) throw new Error('expected a blocker');
    expect(verdict.blockers[0]!.reason).toMatch(
      /for \d\.\d s in a transaction whose current query has run for \d\.\d s: "SELECT count/,
    );
    expect(verdict.blockers[0]!.reason).not.toContain('unknown');
    await running;
  });
});
