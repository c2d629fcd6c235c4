import type pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { quoteQualified } from '../lambdas/core/identifiers';
import { inspectLocks, type LockHolder } from '../lambdas/core/locks/inspect';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import { freshDatabase, type TestDatabase } from './support/db';

const ITEMS = { schema: 'Sales Dept', name: 'Order "Items"' };
const ITEMS_VIEW = { schema: 'Sales Dept', name: 'Big Items' };
const ORDERS = { schema: 'public', name: 'orders' };
const ORDER_TOTALS = { schema: 'public', name: 'order_totals' };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let db: TestDatabase;
let inspector: PgSqlClient;

beforeAll(async () => {
  db = await freshDatabase();
  const setup = await db.connect('setup');
  await setup.query(`
    CREATE SCHEMA "Sales Dept";
    CREATE TABLE ${quoteQualified(ITEMS)} (id int, qty int);
    CREATE VIEW ${quoteQualified(ITEMS_VIEW)} AS SELECT id FROM ${quoteQualified(ITEMS)} WHERE qty > 10;
    CREATE TABLE public.orders (id int PRIMARY KEY, total numeric);
    CREATE MATERIALIZED VIEW public.order_totals AS SELECT sum(total) AS total FROM public.orders;
    GRANT USAGE ON SCHEMA "Sales Dept" TO ${db.pipelineLogin.user};
  `);
  await setup.end();
  // The pipeline's own login, as in production: not a superuser.
  inspector = new PgSqlClient(await db.connect('inspector', db.pipelineLogin));
});

/** Sessions a test opened: whatever they still hold is rolled back after it, even if it failed. */
const opened: pg.Client[] = [];
afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((client) => client.query('ROLLBACK')));
});

async function openSession(applicationName: string): Promise<pg.Client> {
  const client = await db.connect(applicationName);
  opened.push(client);
  return client;
}

async function openReader(applicationName: string, sql: string): Promise<pg.Client> {
  const client = await openSession(applicationName);
  await client.query('BEGIN');
  await client.query(sql);
  return client;
}

/** The backend pid node-postgres learned when connecting (no query, so pg_stat_activity.query is left alone). */
function pidOf(client: pg.Client): number {
  return (client as pg.Client & { processID: number }).processID;
}

function of(holders: LockHolder[], pid: number | null): LockHolder[] {
  return holders.filter((holder) => holder.pid === pid);
}

describe('inspectLocks', () => {
  it('reports an idle-in-transaction reader, a blocker for ACCESS EXCLUSIVE but not ROW EXCLUSIVE', async () => {
    const reader = await openReader('report "app"', `SELECT * FROM ${quoteQualified(ITEMS)}`);
    const pid = pidOf(reader);
    await sleep(600);

    const holders = await inspectLocks(inspector, [
      { relation: ITEMS, mode: 'AccessExclusiveLock', includeDependentViews: false },
    ]);
    expect(of(holders, pid)).toEqual([
      {
        pid,
        user: 'postgres',
        applicationName: 'report "app"',
        clientAddr: '127.0.0.1',
        state: 'idle in transaction',
        autovacuumWraparound: false,
        backendType: 'client backend',
        maintenanceCommand: null,
        gid: null,
        relation: ITEMS,
        targetMode: 'AccessExclusiveLock',
        mode: 'AccessShareLock',
        granted: true,
        transactionAgeSeconds: expect.any(Number),
        queryAgeSeconds: expect.any(Number),
        transactionStartMicros: expect.stringMatching(/^\d{16}$/),
        waitEventType: 'Client',
        blockingPids: [],
        query: 'SELECT * FROM "Sales Dept"."Order ""Items"""',
        ownSession: false,
        parallelWorkers: 0,
      },
    ]);
    const [held] = of(holders, pid);
    expect(held!.transactionAgeSeconds).toBeGreaterThanOrEqual(0.6);
    expect(held!.transactionAgeSeconds).toBeLessThan(10);
    expect(held!.queryAgeSeconds).toBeLessThanOrEqual(held!.transactionAgeSeconds!);

    const verdict = lockVerdict(holders, { graceSeconds: 0.5 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((blocker) => blocker.reason)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^idleInTransaction: pid ${pid} \\(user postgres, application "report \\\\"app\\\\"", from 127\\.0\\.0\\.1\\) has held AccessShareLock on "Sales Dept"\\."Order ""Items""" for \\d\\.\\d s in an open transaction that is idle: "SELECT \\* FROM \\\\"Sales Dept\\\\"\\.\\\\"Order \\\\"\\\\"Items\\\\"\\\\"\\\\""; end that transaction or set onMaxWait to terminate$`,
        ),
      ),
    ]);

    const forMerge = await inspectLocks(inspector, [
      { relation: ITEMS, mode: 'RowExclusiveLock', includeDependentViews: false },
    ]);
    expect(of(forMerge, pid)).toEqual([
      expect.objectContaining({ targetMode: 'RowExclusiveLock', mode: 'AccessShareLock' }),
    ]);
    expect(lockVerdict(forMerge, { graceSeconds: 0.5 })).toEqual({
      safe: true,
      ignored: [{ holder: of(forMerge, pid)[0], reason: 'does not conflict' }],
    });
    await reader.query('ROLLBACK');
  });

  it('ignores a reader younger than grace, saying why', async () => {
    const reader = await openReader('quick reader', 'SELECT * FROM public.orders');
    const pid = pidOf(reader);
    const holders = await inspectLocks(inspector, [
      { relation: ORDERS, mode: 'AccessExclusiveLock', includeDependentViews: false },
    ]);
    expect(of(holders, pid)).toHaveLength(1);
    expect(lockVerdict(holders, { graceSeconds: 2 })).toEqual({
      safe: true,
      ignored: [{ holder: of(holders, pid)[0], reason: 'younger than grace' }],
    });
    await reader.query('ROLLBACK');
  });

  it('finds holders of locks on dependent views only when asked to', async () => {
    // Reading a materialized view locks only it, not the table it was built from.
    const matviewReader = await openReader('matview reader', 'SELECT * FROM public.order_totals');
    const viewReader = await openReader(
      'view reader',
      `SELECT * FROM ${quoteQualified(ITEMS_VIEW)}`,
    );
    const [matviewPid, viewPid] = [pidOf(matviewReader), pidOf(viewReader)];
    const targets = (includeDependentViews: boolean) =>
      [
        { relation: ORDERS, mode: 'AccessExclusiveLock', includeDependentViews },
        { relation: ITEMS, mode: 'AccessExclusiveLock', includeDependentViews },
      ] as const;

    const without = await inspectLocks(inspector, targets(false));
    expect(of(without, matviewPid)).toEqual([]);
    expect(of(without, viewPid).map((holder) => holder.relation)).toEqual([ITEMS]);

    const withViews = await inspectLocks(inspector, targets(true));
    expect(of(withViews, matviewPid)).toEqual([
      expect.objectContaining({
        relation: ORDER_TOTALS,
        targetMode: 'AccessExclusiveLock',
        mode: 'AccessShareLock',
      }),
    ]);
    expect(of(withViews, viewPid).map((holder) => holder.relation)).toEqual([ITEMS_VIEW, ITEMS]);
    await matviewReader.query('ROLLBACK');
    await viewReader.query('ROLLBACK');
  });

  it('checks a relation needed in several modes, directly or as a view, for all of them', async () => {
    const reader = await openReader('view reader', `SELECT * FROM ${quoteQualified(ITEMS_VIEW)}`);
    const pid = pidOf(reader);
    const holders = await inspectLocks(inspector, [
      { relation: ITEMS, mode: 'ShareLock', includeDependentViews: false },
      { relation: ITEMS, mode: 'RowExclusiveLock', includeDependentViews: true },
      { relation: ITEMS_VIEW, mode: 'AccessShareLock', includeDependentViews: false },
    ]);
    expect(
      of(holders, pid).map((holder) => [holder.relation.name, holder.targetMode, holder.mode]),
    ).toEqual([
      ['Big Items', 'RowExclusiveLock', 'AccessShareLock'],
      ['Order "Items"', 'ShareRowExclusiveLock', 'AccessShareLock'],
    ]);
    await reader.query('ROLLBACK');
  });

  it('reports a waiting session as not granted, with the pids it waits for', async () => {
    const reader = await openReader('reader', 'SELECT * FROM public.orders');
    const readerPid = pidOf(reader);
    const waiter = await openSession('waiter');
    const waiterPid = pidOf(waiter);
    await waiter.query("SET lock_timeout = '20s'");
    await waiter.query('BEGIN');
    const waiting = waiter.query('LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE');
    await waitUntil(async () => {
      const holders = await inspectLocks(inspector, [
        { relation: ORDERS, mode: 'RowExclusiveLock', includeDependentViews: false },
      ]);
      return of(holders, waiterPid).length > 0;
    });

    const holders = await inspectLocks(inspector, [
      { relation: ORDERS, mode: 'RowExclusiveLock', includeDependentViews: false },
    ]);
    expect(of(holders, waiterPid)).toEqual([
      expect.objectContaining({
        state: 'active',
        mode: 'AccessExclusiveLock',
        granted: false,
        waitEventType: 'Lock',
        blockingPids: [readerPid],
        query: 'LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE',
      }),
    ]);
    // The reader does not conflict with a merge; the queued ACCESS EXCLUSIVE request does.
    const verdict = lockVerdict(holders, { graceSeconds: 0 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((blocker) => blocker.holder.pid)).toEqual([waiterPid]);
    expect(verdict.blockers[0]!.reason).toContain(
      `has waited for AccessExclusiveLock on public.orders in a transaction open for`,
    );
    expect(verdict.blockers[0]!.reason).toContain(
      `itself blocked by pid ${readerPid}; our RowExclusiveLock would queue behind it`,
    );
    expect(verdict.ignored).toEqual([
      expect.objectContaining({ holder: of(holders, readerPid)[0], reason: 'does not conflict' }),
    ]);

    await reader.query('ROLLBACK');
    await waiting;
    await waiter.query('ROLLBACK');
  });

  it('reports prepared transactions as prepared, each with its gid and owner', async () => {
    const gid = `lock test's "gid"`;
    const otherGid = 'other prepared';
    const session = await openReader('preparer', `SELECT * FROM ${quoteQualified(ITEMS)}`);
    await session.query(`PREPARE TRANSACTION '${gid.replaceAll("'", "''")}'`);
    const other = await openReader('other preparer', 'SELECT * FROM public.orders');
    await other.query(`PREPARE TRANSACTION '${otherGid}'`);
    try {
      const holders = await inspectLocks(inspector, [
        { relation: ITEMS, mode: 'AccessExclusiveLock', includeDependentViews: false },
        { relation: ORDERS, mode: 'AccessExclusiveLock', includeDependentViews: false },
      ]);
      expect(of(holders, null)).toEqual([
        {
          pid: null,
          user: 'postgres',
          applicationName: null,
          clientAddr: null,
          state: 'prepared',
          autovacuumWraparound: false,
          backendType: null,
          maintenanceCommand: null,
          gid,
          relation: ITEMS,
          targetMode: 'AccessExclusiveLock',
          mode: 'AccessShareLock',
          granted: true,
          transactionAgeSeconds: expect.any(Number),
          queryAgeSeconds: expect.any(Number),
          transactionStartMicros: expect.stringMatching(/^\d{16}$/),
          waitEventType: null,
          blockingPids: [],
          query: null,
          ownSession: false,
          parallelWorkers: 0,
        },
        expect.objectContaining({ gid: otherGid, relation: ORDERS, state: 'prepared' }),
      ]);
      const verdict = lockVerdict(holders, { graceSeconds: 0 });
      expect(verdict.safe).toBe(false);
      if (verdict.safe) return;
      expect(verdict.blockers[0]!.reason).toContain(`ROLLBACK PREPARED 'lock test''s "gid"'`);
    } finally {
      await session.query(`ROLLBACK PREPARED '${gid.replaceAll("'", "''")}'`);
      await other.query(`ROLLBACK PREPARED '${otherGid}'`);
    }
  });

  it('leaves out our own session, predicate locks, and targets that do not exist', async () => {
    const ownConnection = await openSession('own');
    const own = new PgSqlClient(ownConnection);
    const serializable = await openSession('serializable');
    await serializable.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
    await serializable.query('SELECT * FROM public.orders');
    const serializablePid = pidOf(serializable);
    await ownConnection.query('BEGIN');
    await ownConnection.query('SELECT * FROM public.orders');
    const holders = await inspectLocks(own, [
      { relation: ORDERS, mode: 'AccessExclusiveLock', includeDependentViews: true },
      {
        relation: { schema: 'public', name: 'missing' },
        mode: 'ShareLock',
        includeDependentViews: true,
      },
      {
        relation: { schema: 'no schema', name: 'x' },
        mode: 'ShareLock',
        includeDependentViews: false,
      },
    ]);
    const { rows } = await serializable.query<{ modes: string[] }>(
      "SELECT array_agg(mode) AS modes FROM pg_locks WHERE relation = 'public.orders'::regclass AND pid = pg_backend_pid()",
    );
    expect(rows[0]!.modes.sort()).toEqual(['AccessShareLock', 'SIReadLock']);
    expect(holders.map((holder) => [holder.pid, holder.mode])).toEqual([
      [serializablePid, 'AccessShareLock'],
    ]);
    await ownConnection.query('ROLLBACK');
    await serializable.query('ROLLBACK');
    expect(await inspectLocks(own, [])).toEqual([]);
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}
