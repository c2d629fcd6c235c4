import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { quoteQualified } from '../lambdas/core/identifiers';
import { inspectLocks, type LockTarget } from '../lambdas/core/locks/inspect';
import { terminateBlockers } from '../lambdas/core/locks/terminate';
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

describe('terminateBlockers', () => {
  it('ends an idle-in-transaction session older than grace, once, and reports it', async () => {
    const victim = await openReader('report tool', `SELECT * FROM "Sales Dept"."Items ""View"""`);
    const pid = pidOf(victim);
    await sleep(600);
    const blockers = await blockersOf(pid);
    expect(blockers).toHaveLength(2); // the table and its view: one session, one record

    const records = await terminateBlockers(syncer, blockers, {
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
        relations: [{ schema: 'Sales Dept', name: 'Items "View"' }, ITEMS],
        transactionAgeSeconds: expect.any(Number),
        query: 'SELECT * FROM "Sales Dept"."Items ""View"""',
        terminated: true,
        reason: null,
        advice: null,
      },
    ]);
    expect(records[0]!.transactionAgeSeconds).toBeGreaterThanOrEqual(GRACE);
    expect(await alive(pid)).toBe(false);
    await expect(victim.query('SELECT 1')).rejects.toThrow();

    const again = await terminateBlockers(syncer, blockers, {
      graceSeconds: GRACE,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(again).toEqual([
      expect.objectContaining({ pid, terminated: false, reason: 'the session had already ended' }),
    ]);
  });

  it('never ends our own sessions', async () => {
    const ours = await openReader(`${OWN_PREFIX}copy worker`);
    const pid = pidOf(ours);
    await sleep(600);
    const blockers = await blockersOf(pid);
    expect(blockers).toHaveLength(1);
    const options = { graceSeconds: GRACE, ownApplicationPrefix: OWN_PREFIX };

    expect(await terminateBlockers(syncer, blockers, options)).toEqual([
      expect.objectContaining({
        pid,
        terminated: false,
        reason: 'it is one of our own sessions',
      }),
    ]);
    // Asked to terminate itself (the blocker's own connection runs the statement).
    expect(
      await terminateBlockers(new PgSqlClient(ours), blockers, {
        ...options,
        ownApplicationPrefix: 'someone else:',
      }),
    ).toEqual([expect.objectContaining({ pid, terminated: false, reason: 'it is this session' })]);
    expect(await alive(pid)).toBe(true);
    await expect(
      terminateBlockers(syncer, blockers, { ...options, ownApplicationPrefix: '' }),
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

    const records = await terminateBlockers(syncer, blockers, {
      graceSeconds: 0,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records.map(({ pid, terminated, reason }) => ({ pid, terminated, reason }))).toEqual([
      {
        pid: pidOf(movedOn),
        terminated: false,
        reason: 'the transaction that held the lock has ended',
      },
      {
        pid: pidOf(savepoint),
        terminated: false,
        reason: 'it no longer holds or waits for a lock on a target',
      },
    ]);
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
    const records = await terminateBlockers(syncer, await blockersOf(pid), {
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
    const records = await terminateBlockers(syncer, blockers.blockers, {
      graceSeconds: 30,
      ownApplicationPrefix: OWN_PREFIX,
    });
    expect(records).toEqual([
      expect.objectContaining({
        pid: pidOf(young),
        terminated: false,
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
      const records = await terminateBlockers(syncer, blockers, {
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
});
