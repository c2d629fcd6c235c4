import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { quoteQualified } from '../lambdas/core/identifiers';
import { inspectLocks, type LockTarget } from '../lambdas/core/locks/inspect';
import { stillBlocking, terminateBlockingSessions } from '../lambdas/core/locks/terminate';
import { type Blocker, lockVerdict } from '../lambdas/core/locks/verdict';
import { freshDatabase, type TestDatabase } from './support/db';
import { uniqueRoles } from './support/swap-fixtures';

const ITEMS = { schema: 'Sales Dept', name: 'Order "Items"' };
const TARGETS: LockTarget[] = [
  { relation: ITEMS, mode: 'AccessExclusiveLock', includeDependentViews: true },
];
const OWN_PREFIX = 'rs-sync:';
const GRACE = 0.5;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Users' sessions: a role of their own, as pg_signal_backend may not end a superuser's. */
const READER = { user: 'locks_terminate_reader', password: 'reader' };

let db: TestDatabase;
let syncer: PgSqlClient;
/** Users' sessions: login roles that are not superusers, as the pipeline's own role is not. */
const users = uniqueRoles('report_user', 'batch_user');
const REPORT = { user: users.report_user, password: 'report' };
const BATCH = { user: users.batch_user, password: 'batch' };

beforeAll(async () => {
  db = await freshDatabase();
  const setup = await db.connect('setup');
  await setup.query(`
    CREATE SCHEMA "Sales Dept";
    CREATE TABLE ${quoteQualified(ITEMS)} (id int);
    CREATE VIEW "Sales Dept"."Items ""View""" AS SELECT id FROM ${quoteQualified(ITEMS)};
    DO $$ BEGIN CREATE ROLE ${READER.user} LOGIN PASSWORD '${READER.password}';
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
    GRANT USAGE ON SCHEMA "Sales Dept" TO ${READER.user};
    GRANT SELECT ON ${quoteQualified(ITEMS)}, "Sales Dept"."Items ""View""" TO ${READER.user};
    GRANT USAGE ON SCHEMA "Sales Dept" TO ${db.pipelineLogin.user};
  `);
  await setup.query(`
    CREATE ROLE ${REPORT.user} LOGIN PASSWORD '${REPORT.password}';
    CREATE ROLE ${BATCH.user} LOGIN PASSWORD '${BATCH.password}';
    GRANT USAGE ON SCHEMA "Sales Dept" TO ${REPORT.user}, ${BATCH.user};
    GRANT SELECT ON ALL TABLES IN SCHEMA "Sales Dept" TO ${REPORT.user}, ${BATCH.user};
    GRANT USAGE ON SCHEMA "Sales Dept" TO ${db.pipelineLogin.user};
  `);
  await setup.end();
  // The pipeline's own role: pg_signal_backend and pg_read_all_stats, not a superuser.
  syncer = new PgSqlClient(await db.connect(`${OWN_PREFIX}swap`, db.pipelineLogin));
});

const opened: pg.Client[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((client) => client.query('ROLLBACK')));
});

async function openReader(
  applicationName: string,
  sql = `SELECT * FROM ${quoteQualified(ITEMS)}`,
  /** null: the superuser's session. */
  login: { user: string; password: string } | null = REPORT,
) {
  const client = await db.connect(applicationName, login ?? undefined);
  opened.push(client);
  await client.query('BEGIN');
  await client.query(sql);
  return client;
}

function pidOf(client: pg.Client): number {
  return (client as pg.Client & { processID: number }).processID;
}

async function blockersOf(pid: number | null): Promise<Blocker[]> {
  const verdict = lockVerdict(await inspectLocks(syncer, TARGETS), { graceSeconds: GRACE });
  if (verdict.safe) throw new Error('expected blockers');
  return verdict.blockers.filter((blocker) => blocker.holder.pid === pid);
}

async function alive(pid: number): Promise<boolean> {
  const rows = await syncer.query<{ alive: boolean }>(
    'SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = :pid::int) AS alive',
    { pid },
  );
  return rows[0]!.alive;
}

describe('terminateBlockingSessions', () => {
  it('ends an idle-in-transaction session older than grace, once, and reports it', async () => {
    const victim = await openReader('report tool', `SELECT * FROM "Sales Dept"."Items ""View"""`);
    const pid = pidOf(victim);
    await sleep(600);
    const blockers = await blockersOf(pid);
    expect(blockers).toHaveLength(2); // the table and its view: one session, one record

    const records = await terminateBlockingSessions(syncer, blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      {
        pid,
        gid: null,
        user: REPORT.user,
        applicationName: 'report tool',
        clientAddr: '127.0.0.1',
        blockerClass: 'idleInTransaction',
        relations: [{ schema: 'Sales Dept', name: 'Items "View"' }, ITEMS],
        transactionAgeSeconds: expect.any(Number),
        query: 'SELECT * FROM "Sales Dept"."Items ""View"""',
        terminated: true,
        outcome: 'terminated',
        reason: null,
        advice: null,
      },
    ]);
    expect(records[0]!.transactionAgeSeconds).toBeGreaterThanOrEqual(GRACE);
    expect(await alive(pid)).toBe(false);
    await expect(victim.query('SELECT 1')).rejects.toThrow();

    const again = await terminateBlockingSessions(syncer, blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(again).toEqual([
      expect.objectContaining({
        pid,
        terminated: false,
        outcome: 'ended',
        reason: 'the session had already ended',
      }),
    ]);
  });

  it('never ends our own sessions', async () => {
    const ours = await openReader(`${OWN_PREFIX}copy worker`);
    const pid = pidOf(ours);
    await sleep(600);
    const blockers = await blockersOf(pid);
    expect(blockers).toHaveLength(1);
    const options = { graceSeconds: GRACE, ownApplicationPrefix: OWN_PREFIX };

    expect(await terminateBlockingSessions(syncer, blockers, options)).toEqual([
      expect.objectContaining({
        pid,
        terminated: false,
        outcome: 'refused',
        reason: 'it is one of our own sessions',
      }),
    ]);
    // Asked to terminate itself (the blocker's own connection runs the statement).
    expect(
      await terminateBlockingSessions(new PgSqlClient(ours), blockers, {
        ...options,
        ownApplicationPrefix: 'someone else:',
      }),
    ).toEqual([expect.objectContaining({ pid, terminated: false, reason: 'it is this session' })]);
    expect(await alive(pid)).toBe(true);
    await expect(
      terminateBlockingSessions(syncer, blockers, { ...options, ownApplicationPrefix: '' }),
    ).rejects.toThrow(/ownApplicationPrefix is empty/);
  });

  it('never kills a session whose transaction moved on, or that gave the lock back', async () => {
    const movedOn = await openReader('moved on');
    const savepoint = await db.connect('savepoint', BATCH);
    opened.push(savepoint);
    await savepoint.query('BEGIN');
    await savepoint.query('SAVEPOINT s');
    await savepoint.query(`SELECT * FROM ${quoteQualified(ITEMS)}`);
    await sleep(600);
    const blockers = [
      ...(await blockersOf(pidOf(movedOn))),
      ...(await blockersOf(pidOf(savepoint))),
    ];
    expect(blockers).toHaveLength(2);

    // Same pid, new transaction holding the same lock: as good as a recycled pid.
    await movedOn.query('COMMIT');
    await movedOn.query('BEGIN');
    await movedOn.query(`SELECT * FROM ${quoteQualified(ITEMS)}`);
    // Same transaction, but the lock went with the rolled-back savepoint.
    await savepoint.query('ROLLBACK TO SAVEPOINT s');

    const records = await terminateBlockingSessions(syncer, blockers, {
      graceSeconds: 0,
      ownApplicationPrefix: OWN_PREFIX,
    });
    const outcomes = records.map(({ pid, terminated, outcome, reason }) => ({
      pid,
      terminated,
      outcome,
      reason,
    }));
    expect(outcomes).toEqual([
      {
        pid: pidOf(movedOn),
        terminated: false,
        outcome: 'ended',
        reason: 'the transaction that held the lock has ended',
      },
      {
        pid: pidOf(savepoint),
        terminated: false,
        outcome: 'ended',
        reason: 'it no longer holds or waits for a lock on a target',
      },
    ]);
    // Neither blocks any more: the swap may go ahead.
    expect(stillBlocking(records)).toEqual([]);
    expect(await alive(pidOf(movedOn))).toBe(true);
    expect(await alive(pidOf(savepoint))).toBe(true);
  });

  it("reports, without failing, a superuser's session it is not allowed to end", async () => {
    // pg_signal_backend may not signal a superuser's backend (PG 14 says "must be a superuser
    // to terminate superuser process", 17 "permission denied to terminate process"; on Aurora, rds_superuser's
    // sessions are protected likewise).
    const admin = await openReader('admin console', undefined, null);
    const pid = pidOf(admin);
    await sleep(600);
    const records = await terminateBlockingSessions(syncer, await blockersOf(pid), {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({
        pid,
        user: 'postgres',
        terminated: false,
        reason: expect.stringMatching(/^the server refused: .*terminate/),
        advice: expect.stringContaining('a superuser'),
      }),
    ]);
    expect(await alive(pid)).toBe(true);
  });

  it('leaves a session younger than grace alone', async () => {
    const young = await openReader('young');
    const blockers = lockVerdict(await inspectLocks(syncer, TARGETS), { graceSeconds: 0 });
    if (blockers.safe) throw new Error('expected blockers');
    const records = await terminateBlockingSessions(syncer, blockers.blockers, {
      graceSeconds: 30,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({
        pid: pidOf(young),
        terminated: false,
        outcome: 'refused',
        reason: 'its transaction is younger than the grace period',
      }),
    ]);
    expect(await alive(pidOf(young))).toBe(true);
  });

  it('does not terminate a prepared transaction but says how to end it', async () => {
    const gid = "nightly's batch";
    const preparer = await openReader('preparer');
    await preparer.query(`PREPARE TRANSACTION 'nightly''s batch'`);
    try {
      await sleep(600);
      const blockers = await blockersOf(null);
      const records = await terminateBlockingSessions(syncer, blockers, {
        graceSeconds: GRACE,
        ownApplicationPrefix: OWN_PREFIX,
      });
      expect(records).toEqual([
        expect.objectContaining({
          pid: null,
          gid,
          user: REPORT.user,
          relations: [ITEMS],
          terminated: false,
          outcome: 'refused',
          reason: 'a prepared transaction has no session to terminate',
          advice: "ROLLBACK PREPARED 'nightly''s batch'",
        }),
      ]);
      const stillPrepared = await syncer.query(
        'SELECT gid FROM pg_prepared_xacts WHERE gid = :gid',
        { gid },
      );
      expect(stillPrepared).toEqual([{ gid }]);
    } finally {
      await preparer.query(`ROLLBACK PREPARED 'nightly''s batch'`);
    }
  });

  it('counts a session that ended by itself after the check as ended, not as a failure', async () => {
    const reader = await openReader('leaves on its own');
    const pid = pidOf(reader);
    await sleep(600);
    const blockers = await blockersOf(pid);
    await reader.end();
    await waitUntil(async () => !(await alive(pid)));

    const records = await terminateBlockingSessions(syncer, blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({ pid, terminated: false, outcome: 'ended' }),
    ]);
    expect(stillBlocking(records)).toEqual([]);
  });

  it("never ends a session of the pipeline's own role, even without our application_name", async () => {
    // Over the RDS Data API the client sets no application_name: the role is what is ours.
    const setup = await db.connect('setup');
    await setup.query(`GRANT SELECT ON ${quoteQualified(ITEMS)} TO ${db.pipelineLogin.user}`);
    const ours = await db.connect('', db.pipelineLogin);
    opened.push(ours);
    await ours.query('BEGIN');
    await ours.query(`SELECT * FROM ${quoteQualified(ITEMS)}`);
    const pid = pidOf(ours);
    await sleep(600);

    const holders = await inspectLocks(syncer, TARGETS);
    expect(holders.filter((holder) => holder.pid === pid)).toEqual([
      expect.objectContaining({ applicationName: '', ownSession: true }),
    ]);
    const blockers = await blockersOf(pid);
    expect(blockers[0]!.reason).toContain(
      "(user sync_pipeline, the pipeline's own role, from 127.0.0.1) has held AccessShareLock",
    );
    expect(blockers[0]!.reason).toMatch(/never terminated: wait for it to finish$/);
    const records = await terminateBlockingSessions(syncer, blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({
        pid,
        terminated: false,
        outcome: 'refused',
        reason: 'it is one of our own sessions',
      }),
    ]);
    expect(await alive(pid)).toBe(true);
  });

  it('shows a parallel query as one blocker under its leader, and ends it by ending the leader', async () => {
    const setup = await db.connect('setup');
    await setup.query(`
      CREATE TABLE public.big AS SELECT g AS id FROM generate_series(1, 20000) g;
      ANALYZE public.big;
      GRANT SELECT ON public.big TO ${READER.user};
    `);
    const big = { schema: 'public', name: 'big' };
    const leader = await db.connect('parallel report', READER);
    opened.push(leader);
    const leaderPid = pidOf(leader);
    // Plan it in parallel however small the table; the GUC was renamed in PostgreSQL 16.
    const force = db.major >= 16 ? 'debug_parallel_query' : 'force_parallel_mode';
    await leader.query(`SET ${force} = on; SET parallel_setup_cost = 0;
      SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
      SET max_parallel_workers_per_gather = 2`);
    await leader.query('BEGIN');
    const running = leader
      .query('SELECT count(*) FROM public.big WHERE pg_sleep(0.002) IS NOT NULL')
      .catch((error: unknown) => error);
    const workers = async () =>
      (
        await syncer.query<{ pid: number }>(
          'SELECT pid FROM pg_stat_activity WHERE leader_pid = :pid::int AND pid <> :pid::int',
          { pid: leaderPid },
        )
      ).map((row) => row.pid);
    await waitUntil(async () => (await workers()).length > 0, 20_000);
    const workerPids = await workers();
    await sleep(600);

    const targets: LockTarget[] = [
      { relation: big, mode: 'AccessExclusiveLock', includeDependentViews: false },
    ];
    const holders = await inspectLocks(syncer, targets);
    expect(holders.filter((holder) => workerPids.includes(holder.pid!))).toEqual([]);
    expect(holders).toEqual([
      expect.objectContaining({
        pid: leaderPid,
        state: 'active',
        mode: 'AccessShareLock',
        parallelWorkers: expect.any(Number),
      }),
    ]);
    expect(holders[0]!.parallelWorkers).toBeGreaterThanOrEqual(1);
    const verdict = lockVerdict(holders, { graceSeconds: GRACE });
    if (verdict.safe) throw new Error('expected the parallel query to block');
    expect(verdict.blockers[0]!.reason).toMatch(/leading \d parallel workers?\) has held/);

    const records = await terminateBlockingSessions(syncer, verdict.blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({ pid: leaderPid, terminated: true, outcome: 'terminated' }),
    ]);
    expect(await running).toBeInstanceOf(Error);
    await waitUntil(async () => {
      for (const pid of [leaderPid, ...workerPids]) if (await alive(pid)) return false;
      return true;
    });
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}
