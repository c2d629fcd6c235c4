/**
 * The lock check and the swap on an Aurora Limitless cluster, over the stand-in rds_aurora
 * views (local/emulators/limitless-shims.ts) on a real PostgreSQL: blockers are found through
 * limitless_locks / limitless_stat_activity and named with their subcluster, and a transaction
 * Limitless ends to resolve a distributed deadlock is retried as busy.
 */
import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteQualified } from '../lambdas/core/identifiers';
import { inspectLocks } from '../lambdas/core/locks/inspect';
import {
  DETECT_LOCK_VIEWS_SQL,
  detectLockViews,
  INSPECT_LIMITLESS_LOCKS_SQL,
} from '../lambdas/core/locks/limitless';
import { terminateBlockingSessions } from '../lambdas/core/locks/terminate';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import { sessionsBlocking } from '../lambdas/core/locks/waiting';
import type { SqlClient } from '../lambdas/core/sql-client';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { describeWaitedOn, type SwapProgress, swapWhenSafe } from '../lambdas/core/swap/gate';
import { sessionKey } from '../lambdas/core/swap/gate-decision';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError } from '../lambdas/core/swap/policy';
import { describeBlocker } from '../lambdas/pipeline/state';
import {
  DISTRIBUTED_DEADLOCK_MESSAGE,
  failWithDistributedDeadlock,
  installLimitlessShims,
  placeSession,
} from '../local/emulators/limitless-shims';
import { freshDatabase, type TestDatabase } from './support/db';
import { holder } from './support/lock-holders';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const ORDERS: QualifiedName = { schema: 'public', name: 'orders' };
const ACCESS_EXCLUSIVE = [
  { relation: ORDERS, mode: 'AccessExclusiveLock' as const, includeDependentViews: true },
];
const roles = uniqueRoles('pipeline');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;
let viewsBeforeShims: string;

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('setup');
  await admin.query(`CREATE TABLE public.orders (id int PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO public.orders SELECT g, 'old' FROM generate_series(1, 100) g`);
  ({ client: pipeline, sql } = await pipelineSession(db, roles.pipeline, []));
  await admin.query(`ALTER TABLE public.orders OWNER TO ${roles.pipeline}`);
  await admin.query(`GRANT CREATE ON SCHEMA public TO ${roles.pipeline}`);
  viewsBeforeShims = await detectLockViews(sql);
  await installLimitlessShims(admin);
});

const opened: pg.Client[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((client) => client.query('ROLLBACK')));
  await admin.query('DELETE FROM rds_aurora.shim_placements');
});

async function reader(applicationName: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await db.connect(applicationName);
  opened.push(client);
  await client.query('BEGIN');
  await client.query('SELECT count(*) FROM public.orders');
  return { client, pid: (client as pg.Client & { processID: number }).processID };
}

/** A SqlClient passing every query to `inner`, counting the detection and the lock checks. */
function countingQueries(inner: SqlClient): {
  client: SqlClient;
  asked: { detect: number; inspect: number };
} {
  const asked = { detect: 0, inspect: 0 };
  return {
    asked,
    client: {
      query: (text, parameters, options) => {
        if (text === DETECT_LOCK_VIEWS_SQL) asked.detect += 1;
        if (text === INSPECT_LIMITLESS_LOCKS_SQL) asked.inspect += 1;
        return inner.query(text, parameters, options);
      },
    },
  };
}

describe('the lock check on Aurora Limitless', () => {
  it('is used where the rds_aurora.limitless_* views exist, and only there', () => {
    expect(viewsBeforeShims).toBe('postgres');
  });

  it('finds a reader through the cluster-wide views and names the subcluster it runs on', async () => {
    expect(await detectLockViews(sql)).toBe('limitless');
    const { pid } = await reader('dashboard');
    // Its distributed session: coordinated from router 3, with a participant on shard 5.
    await placeSession(admin, pid, {
      subclusterId: '3',
      subclusterType: 'router',
      state: 'coordinator',
    });
    await placeSession(admin, pid, {
      subclusterId: '5',
      subclusterType: 'shard',
      state: 'participant',
    });
    await sleep(300);

    const holders = (await inspectLocks(sql, ACCESS_EXCLUSIVE, 'limitless')).filter(
      (holder) => holder.pid === pid,
    );
    // One session, reported once under its coordinator, with every node holding its lock.
    expect(holders).toEqual([
      expect.objectContaining({
        pid,
        user: 'postgres',
        applicationName: 'dashboard',
        state: 'idle in transaction',
        relation: ORDERS,
        mode: 'AccessShareLock',
        granted: true,
        subcluster: { id: '3', type: 'router', lockedOn: ['3', '5'] },
      }),
    ]);
    const verdict = lockVerdict(holders, { graceSeconds: 0.1 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    const [blocker] = verdict.blockers;
    expect(blocker!.reason).toMatch(
      new RegExp(
        `^idleInTransaction: pid ${pid} on subcluster 3 \\(router\\) \\(user postgres, application "dashboard", from 127\\.0\\.0\\.1, its lock on subclusters 3, 5\\) has held AccessShareLock on public\\.orders for \\d\\.\\d s in an open transaction that is idle`,
      ),
    );
    // The run summary carries the node too.
    expect(describeBlocker(blocker!.holder, blocker!.reason, 'terminate')).toMatchObject({
      atMaxWait: 'fail',
      atMaxWaitException: 'sessions of an Aurora Limitless cluster are never terminated',
    });
    expect(describeBlocker(blocker!.holder, blocker!.reason, 'fail').subcluster).toEqual({
      id: '3',
      type: 'router',
      lockedOn: ['3', '5'],
    });
    // Without the views' answer, the same question asked of pg_locks names no subcluster.
    const local = await inspectLocks(sql, ACCESS_EXCLUSIVE, 'postgres');
    expect(local.find((holder) => holder.pid === pid)?.subcluster).toBeUndefined();
  });

  it('leaves out its own distributed session, and detects the views when not told', async () => {
    await pipeline.query('BEGIN');
    try {
      await pipeline.query('LOCK TABLE public.orders IN ACCESS SHARE MODE');
      const { pid } = await reader('other');
      const pids = (await inspectLocks(sql, ACCESS_EXCLUSIVE)).map((holder) => holder.pid);
      expect(pids).toContain(pid);
      expect(pids).not.toContain((pipeline as pg.Client & { processID: number }).processID);
    } finally {
      await pipeline.query('ROLLBACK');
    }
  });

  it('makes the gate wait for a blocker on a shard and give up naming it', async () => {
    const { pid } = await reader('report on a shard');
    await placeSession(admin, pid, {
      subclusterId: '6',
      subclusterType: 'shard',
      state: 'coordinator',
    });
    const staging = await createStaging(pipeline, ORDERS, 'orders_gate', `SELECT 1, 'new'`);
    await prepareStaging(sql, { live: ORDERS, staging });
    const plan = buildSwapPlan([{ live: ORDERS, staging, strategy: 'rename' }], {
      runId: 'limitless-gate',
    });
    await sleep(300);
    const { client: counting, asked } = countingQueries(sql);
    const failure = await swapWhenSafe(counting, plan, {
      graceSeconds: 0.1,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 0.5,
      onMaxWait: 'fail',
    }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(LockWaitTimeoutError);
    expect((failure as Error).message).toContain(`pid ${pid} on subcluster 6 (shard)`);
    expect(asked.detect).toBe(1);
    expect(asked.inspect).toBeGreaterThanOrEqual(3);
    await pipeline.query(`DROP TABLE ${quoteQualified(staging)}`);
  });

  it('leaves a session on the cluster alone when asked to terminate it, saying why', async () => {
    const { client, pid } = await reader('notebook');
    await placeSession(admin, pid, {
      subclusterId: '4',
      subclusterType: 'router',
      state: 'coordinator',
    });
    await sleep(300);
    const verdict = lockVerdict(await inspectLocks(sql, ACCESS_EXCLUSIVE), { graceSeconds: 0.1 });
    if (verdict.safe) throw new Error('the reader should block');
    const mine = verdict.blockers.filter((blocker) => blocker.holder.pid === pid);
    expect(mine[0]!.reason).toMatch(
      /; end that transaction \(on subcluster 4; onMaxWait "terminate" does not end sessions of an Aurora Limitless cluster\)$/,
    );
    const [record] = await terminateBlockingSessions(sql, mine, {
      graceSeconds: 0,
      ownApplicationPrefix: 'redshift-aurora-sync',
    });
    expect(record).toMatchObject({
      pid,
      terminated: false,
      outcome: 'refused',
      reason: expect.stringContaining('subcluster 4 of an Aurora Limitless cluster'),
      subcluster: { id: '4', type: 'router' },
    });
    // Still there, still in its transaction.
    expect((await client.query('SELECT 1 AS alive')).rows).toEqual([{ alive: 1 }]);
  });
});

describe('whom an attempt waits for, on Aurora Limitless', () => {
  it('names the session holding a conflicting lock on the node where the attempt waits', async () => {
    const { pid: readerPid } = await reader('long report');
    await placeSession(admin, readerPid, {
      subclusterId: '3',
      subclusterType: 'router',
      state: 'coordinator',
    });
    await placeSession(admin, readerPid, {
      subclusterId: '2',
      subclusterType: 'shard',
      state: 'participant',
    });
    const attempt = await db.connect('redshift-aurora-sync attempt', {
      user: roles.pipeline,
      password: `${roles.pipeline} secret`,
    });
    opened.push(attempt);
    const attemptPid = (attempt as pg.Client & { processID: number }).processID;
    await placeSession(admin, attemptPid, {
      subclusterId: '2',
      subclusterType: 'shard',
      state: 'coordinator',
    });
    await attempt.query(`BEGIN; SET LOCAL lock_timeout = '5s'`);
    const waiting = attempt
      .query('LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE')
      .catch((error: Error) => error);
    await sleep(300);

    const sessions = await sessionsBlocking(sql, [{ relation: ORDERS }], 'limitless');
    expect(sessions).toEqual([
      expect.objectContaining({
        blockedPid: attemptPid,
        pid: readerPid,
        applicationName: 'long report',
        state: 'idle in transaction',
        subcluster: { id: '3', type: 'router', lockedOn: ['3'] },
      }),
    ]);
    expect(describeWaitedOn(sessions)).toMatch(
      new RegExp(
        `^pid ${readerPid} on subcluster 3 \\(router\\) \\(user postgres, application "long report"\\)`,
      ),
    );
    await admin.query('SELECT pg_cancel_backend($1)', [attemptPid]);
    expect(await waiting).toBeInstanceOf(Error);
  });
});

describe('a distributed deadlock', () => {
  it('comes back from the swap as busy, changing nothing, and is retried until the swap succeeds', async () => {
    const staging = await createStaging(
      pipeline,
      ORDERS,
      'orders_new',
      `SELECT g, 'new' FROM generate_series(1, 10) g`,
    );
    await prepareStaging(sql, { live: ORDERS, staging });
    const plan = buildSwapPlan([{ live: ORDERS, staging, strategy: 'rename' }], {
      runId: 'limitless-deadlock',
    });

    await failWithDistributedDeadlock(admin, 1);
    const attempt = await attemptSwap(sql, plan);
    expect(attempt).toEqual({
      status: 'busy',
      reason: 'distributed deadlock',
      message: expect.stringContaining(DISTRIBUTED_DEADLOCK_MESSAGE),
    });
    const [unchanged] = (await admin.query(`SELECT count(*)::int AS n FROM public.orders`)).rows;
    expect(unchanged.n).toBe(100);

    await failWithDistributedDeadlock(admin, 2);
    const progress: SwapProgress[] = [];
    const { client: counting, asked } = countingQueries(sql);
    const outcome = await swapWhenSafe(
      counting,
      plan,
      { graceSeconds: 0.1, pollIntervalSeconds: 0.05, maxWaitSeconds: 30 },
      { onProgress: (step) => progress.push(step) },
    );
    expect(outcome.attempts).toBe(3);
    // Asked once for the whole wait, not at each check or attempt.
    expect(asked.detect).toBe(1);
    expect(progress.filter((step) => step.kind === 'busy').map((step) => step.message)).toEqual([
      expect.stringMatching(/^distributed deadlock: .*aborting transaction participating/),
      expect.stringMatching(/^distributed deadlock: .*aborting transaction participating/),
    ]);
    const [swapped] = (await admin.query(`SELECT count(*)::int AS n FROM public.orders`)).rows;
    expect(swapped.n).toBe(10);
  });
});

describe('on Aurora Limitless, a pid is its node’s', () => {
  it('keeps the same pid on two subclusters apart in the gate’s memory', () => {
    const on = (id: string) =>
      holder({ pid: 7, subcluster: { id, type: 'router', lockedOn: [id] } });
    expect(sessionKey(on('2'))).not.toBe(sessionKey(on('3')));
    expect(sessionKey(on('2'))).toBe(sessionKey(on('2')));
    expect(sessionKey(holder({ pid: 7 }))).toBe('pid 7');
  });
});
