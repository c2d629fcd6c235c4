/**
 * Partitioned live tables on real PostgreSQL, as the pipeline's non-superuser role: only the
 * partitions whose rows changed are replaced (the others keep their storage and are not
 * locked), everything users built on a replaced partition is carried over, the lock gate looks
 * at the parent and the changed partitions only, and half-done detaches are finished.
 */
import type pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { inspectLocks } from '../lambdas/core/locks/inspect';
import {
  type LockRetrySettings,
  PartitionLockTimeoutError,
} from '../lambdas/core/partitions/lock-retry';
import { plannedPartitions, RowsOutsidePartitionsError } from '../lambdas/core/partitions/prepare';
import { RETIRED_SCHEMA } from '../lambdas/core/schema/admin';
import {
  attemptSwap,
  prepareStaging,
  retiredVersions,
  rollback,
} from '../lambdas/core/swap/engine';
import { lockTargets, swapWhenSafe } from '../lambdas/core/swap/gate';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError } from '../lambdas/core/swap/policy';
import { preflight } from '../lambdas/core/swap/preflight';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const events: QualifiedName = { schema: 'public', name: 'events' };
const DAYS = ['2024-01-01', '2024-01-02', '2024-01-03'];

let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;
let pipeline: pg.Client;
let roles: ReturnType<typeof uniqueRoles<['owner', 'analyst', 'pipeline']>>;
let login: { user: string; password: string };
let runs = 0;

/** Rows of one day: `n` rows whose payload says `version`. */
function dayRows(day: string, version: string, n = 3): string {
  return `SELECT '${day}'::date, g, '${version} ' || g FROM generate_series(1, ${n}) g`;
}

async function partitionFacts(): Promise<Record<string, { oid: number; filenode: number }>> {
  const { rows } = await admin.query<{ name: string; oid: number; filenode: number }>(
    `SELECT c.relname AS name, c.oid::int AS oid, c.relfilenode::int AS filenode
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'public.events'::regclass ORDER BY 1`,
  );
  return Object.fromEntries(
    rows.map((row) => [row.name, { oid: row.oid, filenode: row.filenode }]),
  );
}

/** The pipeline's steps for one table: staging, preflight, prepare, plan, one swap attempt. */
async function publish(
  fill: string,
  options: { lockTimeoutMs?: number; live?: QualifiedName; locks?: LockRetrySettings } = {},
) {
  runs += 1;
  const runId = `run-${runs}`;
  const live = options.live ?? events;
  const staging = await createStaging(pipeline, live, `${live.name}_staging_${runs}`, fill);
  const table = { live, staging, strategy: 'rename' as const };
  await preflight(sql, [table], { withStaging: true });
  await prepareStaging(sql, table, options.locks ? { locks: options.locks } : {});
  const partitions = await plannedPartitions(sql, table);
  const plan = buildSwapPlan([{ ...table, partitions: partitions ?? [] }], {
    runId,
    lockTimeoutMs: options.lockTimeoutMs ?? 200,
  });
  return { plan, staging, attempt: () => attemptSwap(sql, plan) };
}

/**
 * A DETACH ... CONCURRENTLY of day 3 that waits for a reader of the parent, and whose session
 * is killed: the detach is left pending.
 */
async function leaveDetachPending(): Promise<void> {
  const reader = await db.connect('reader');
  await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await reader.query('SELECT count(*) FROM public.events');
  const detacher = await db.connect('detacher');
  await detacher.query(`SET ROLE ${roles.owner}`);
  const detaching = detacher
    .query('ALTER TABLE public.events DETACH PARTITION public.events_2024_01_03 CONCURRENTLY')
    .catch((error: unknown) => error);
  await expect
    .poll(async () => {
      const { rows } = await admin.query(
        `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.events'::regclass AND inhdetachpending`,
      );
      return rows[0].n;
    })
    .toBe(1);
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'detacher'`,
  );
  expect(await detaching).toBeInstanceOf(Error);
  await reader.query('COMMIT');
}

beforeEach(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  roles = uniqueRoles('owner', 'analyst', 'pipeline');
  const { owner, analyst } = roles;
  await admin.query(`
    CREATE ROLE ${owner}; CREATE ROLE ${analyst};
    GRANT CREATE, USAGE ON SCHEMA public TO ${owner}, ${analyst};
    SET ROLE ${owner};
    CREATE TABLE public.events (day date NOT NULL, id integer NOT NULL, payload text,
                                PRIMARY KEY (day, id)) PARTITION BY RANGE (day);
    CREATE INDEX events_payload_idx ON public.events (payload);
    ${DAYS.map(
      (day, index) =>
        `CREATE TABLE public.events_${day.replaceAll('-', '_')} PARTITION OF public.events
           FOR VALUES FROM ('${day}') TO ('${DAYS[index + 1] ?? '2024-01-04'}');`,
    ).join('\n')}
    INSERT INTO public.events ${DAYS.map((day) => dayRows(day, 'v1')).join(' UNION ALL ')};
    GRANT SELECT ON public.events_2024_01_02 TO ${analyst};
    COMMENT ON TABLE public.events_2024_01_02 IS 'The second day';
    RESET ROLE;
    SET ROLE ${analyst};
    CREATE VIEW public.second_day AS SELECT id, payload FROM public.events_2024_01_02;
    RESET ROLE;
  `);
  const session = await pipelineSession(db, roles.pipeline, [owner, analyst]);
  pipeline = session.client;
  sql = session.sql;
  login = session.login;
});

describe('a day-partitioned live table', () => {
  it('replaces only the changed partition, carrying its grants, comment, view and indexes', async () => {
    const before = await partitionFacts();
    const { attempt } = await publish(
      [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v2', 4), dayRows(DAYS[2]!, 'v1')].join(
        ' UNION ALL ',
      ),
    );
    const outcome = await attempt();
    expect(outcome.status).toBe('swapped');
    const after = await partitionFacts();
    // Unchanged partitions: the same tables, the same storage.
    expect(after.events_2024_01_01).toEqual(before.events_2024_01_01);
    expect(after.events_2024_01_03).toEqual(before.events_2024_01_03);
    // The changed one: a new table under the old name, with the new rows.
    expect(after.events_2024_01_02!.oid).not.toBe(before.events_2024_01_02!.oid);
    const { rows } = await admin.query(
      `SELECT day::text, count(*)::int AS n, min(payload) AS payload FROM public.events GROUP BY 1 ORDER BY 1`,
    );
    expect(rows).toEqual([
      { day: DAYS[0], n: 3, payload: 'v1 1' },
      { day: DAYS[1], n: 4, payload: 'v2 1' },
      { day: DAYS[2], n: 3, payload: 'v1 1' },
    ]);
    // Only the parent and the changed partition (with its view) were locked, not the others.
    const locked = (outcome.status === 'swapped' ? outcome.result.locks : []).map(
      (lock) => lock.relation,
    );
    expect(locked).toEqual(
      expect.arrayContaining(['public.events', 'public.events_2024_01_02', 'public.second_day']),
    );
    expect(locked).not.toContain('public.events_2024_01_01');
    expect(locked).not.toContain('public.events_2024_01_03');
    // What users built on the partition is on its replacement.
    const carried = await admin.query(
      `SELECT has_table_privilege($1, 'public.events_2024_01_02', 'SELECT') AS granted,
              obj_description('public.events_2024_01_02'::regclass, 'pg_class') AS comment,
              pg_get_expr(c.relpartbound, c.oid) AS bound,
              (SELECT count(*)::int FROM pg_constraint WHERE conrelid = c.oid AND contype = 'c') AS checks,
              (SELECT count(*)::int FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid
               WHERE x.indrelid = c.oid) AS "attachedIndexes"
       FROM pg_class c WHERE c.oid = 'public.events_2024_01_02'::regclass`,
      [roles.analyst],
    );
    expect(carried.rows[0]).toEqual({
      granted: true,
      comment: 'The second day',
      bound: "FOR VALUES FROM ('2024-01-02') TO ('2024-01-03')",
      checks: 0,
      attachedIndexes: 2,
    });
    const view = await admin.query('SELECT count(*)::int AS n FROM public.second_day');
    expect(view.rows[0]).toEqual({ n: 4 });
    // The old partition is retained, detached, for rollback and retention.
    const [retired] = await retiredVersions(sql, { schema: 'public', name: 'events_2024_01_02' });
    expect(retired?.runId).toBe('run-1');
    const old = await admin.query(
      `SELECT count(*)::int AS n FROM ${RETIRED_SCHEMA}.${retired!.retiredTable}`,
    );
    expect(old.rows[0]).toEqual({ n: 3 });
  });

  it('rolls one partition back to the version it replaced, keeping the one it leaves', async () => {
    const second = { schema: 'public', name: 'events_2024_01_02' };
    const { attempt } = await publish(
      [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v2', 4), dayRows(DAYS[2]!, 'v1')].join(
        ' UNION ALL ',
      ),
    );
    expect((await attempt()).status).toBe('swapped');
    const before = await partitionFacts();
    const outcome = await rollback(sql, second, { runId: 'rollback-1' });
    expect(outcome.status).toBe('swapped');
    const after = await partitionFacts();
    expect(after.events_2024_01_01).toEqual(before.events_2024_01_01);
    expect(after.events_2024_01_03).toEqual(before.events_2024_01_03);
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n, min(payload) AS payload,
              has_table_privilege($1, 'public.events_2024_01_02', 'SELECT') AS granted,
              obj_description('public.events_2024_01_02'::regclass, 'pg_class') AS comment
       FROM public.events WHERE day = '2024-01-02'`,
      [roles.analyst],
    );
    expect(rows).toEqual([{ n: 3, payload: 'v1 1', granted: true, comment: 'The second day' }]);
    // The version rolled back from is kept, so the rollback can be rolled back.
    const versions = await retiredVersions(sql, second);
    expect(versions.map((version) => version.runId)).toEqual(['rollback-1']);
    expect((await rollback(sql, second, { runId: 'rollback-2' })).status).toBe('swapped');
    const { rows: again } = await admin.query(
      `SELECT count(*)::int AS n FROM public.events WHERE day = '2024-01-02'`,
    );
    expect(again).toEqual([{ n: 4 }]);
  });

  it('changes nothing and locks nothing when no partition changed', async () => {
    const before = await partitionFacts();
    const { attempt, plan } = await publish(
      DAYS.map((day) => dayRows(day, 'v1')).join(' UNION ALL '),
    );
    expect(plan.tables[0]!.partitions).toEqual([]);
    expect(lockTargets(plan).map((target) => target.relation.name)).toEqual([
      plan.tables[0]!.staging.name,
    ]);
    const outcome = await attempt();
    expect(outcome.status).toBe('swapped');
    expect(await partitionFacts()).toEqual(before);
    const locked = outcome.status === 'swapped' ? outcome.result.locks : [];
    expect(locked.map((lock) => lock.relation)).toEqual([
      `redshift_sync_staging.${plan.tables[0]!.staging.name}`,
    ]);
  });

  it('is not held up by a reader of an unchanged partition; waits for one of the changed partition, naming it', async () => {
    const { attempt, plan } = await publish(
      [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v3'), dayRows(DAYS[2]!, 'v1')].join(
        ' UNION ALL ',
      ),
    );
    const unchangedReader = await db.connect('report-on-day-1');
    await unchangedReader.query('BEGIN');
    await unchangedReader.query('SELECT count(*) FROM public.events_2024_01_01');
    const changedReader = await db.connect('report-on-day-2');
    await changedReader.query('BEGIN');
    await changedReader.query('SELECT count(*) FROM public.events_2024_01_02');
    const holders = await inspectLocks(sql, lockTargets(plan));
    expect(holders.map((holder) => [holder.applicationName, holder.relation.name])).toEqual([
      ['report-on-day-2', 'events_2024_01_02'],
    ]);
    expect((await attempt()).status).toBe('busy');
    await changedReader.query('COMMIT');
    // The reader of day 1 still holds its lock: the swap goes through all the same.
    expect((await attempt()).status).toBe('swapped');
    await unchangedReader.query('COMMIT');
    const { rows } = await admin.query(
      `SELECT min(payload) AS payload FROM public.events WHERE day = '2024-01-02'`,
    );
    expect(rows[0]).toEqual({ payload: 'v3 1' });
  });

  it('through the gate: swaps past a long reader of an unchanged partition, gives up naming one of the changed partition', async () => {
    const fill = [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v6'), dayRows(DAYS[2]!, 'v1')].join(
      ' UNION ALL ',
    );
    const { plan } = await publish(fill);
    const policy = { graceSeconds: 0.2, pollIntervalSeconds: 0.2, maxWaitSeconds: 1 };
    const changedReader = await db.connect('month-end-report');
    await changedReader.query('BEGIN');
    await changedReader.query('SELECT count(*) FROM public.events_2024_01_02');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const error = await swapWhenSafe(sql, plan, policy).catch((e: unknown) => e);
    await changedReader.query('COMMIT');
    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    expect((error as Error).message).toMatch(
      /application "month-end-report".*AccessShareLock on public\.events_2024_01_02/s,
    );
    const unchangedReader = await db.connect('day-one-report');
    await unchangedReader.query('BEGIN');
    await unchangedReader.query('SELECT count(*) FROM public.events_2024_01_01');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const outcome = await swapWhenSafe(sql, plan, policy);
    await unchangedReader.query('COMMIT');
    expect(outcome.attempts).toBe(1);
    expect(outcome.blockersSeen).toEqual([]);
  });

  it('leaves live as it was when the swap is killed', async () => {
    const before = await partitionFacts();
    const { plan } = await publish(
      [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v4'), dayRows(DAYS[2]!, 'v1')].join(
        ' UNION ALL ',
      ),
    );
    // A reader of the changed partition keeps the swap waiting for its locks; then the swap's
    // session is killed, as a Lambda timeout or a failover would.
    const reader = await db.connect('long-report');
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM public.events_2024_01_02');
    const killed = new PgSqlClient(await db.connect('redshift-aurora-sync', login));
    const swapping = attemptSwap(killed, { ...plan, lockTimeoutMs: 60_000 }).catch(
      (error: unknown) => error,
    );
    await expect
      .poll(async () => {
        const { rows } = await admin.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%swap(%'`,
        );
        return rows[0].n;
      })
      .toBe(1);
    await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%swap(%'`,
    );
    expect(await swapping).toBeInstanceOf(Error);
    await reader.query('COMMIT');
    expect(await partitionFacts()).toEqual(before);
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n, min(payload) AS payload FROM public.events WHERE day = '2024-01-02'`,
    );
    expect(rows[0]).toEqual({ n: 3, payload: 'v1 1' });
    // The next attempt publishes.
    expect((await attemptSwap(sql, plan)).status).toBe('swapped');
  });

  it('finishes a detach a dead session left pending (DETACH ... FINALIZE)', async () => {
    await leaveDetachPending();
    const { rows: pending } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.events'::regclass AND inhdetachpending`,
    );
    expect(pending).toEqual([{ n: 1 }]);
    // The next run finishes it (the source no longer has day 3 either) and publishes.
    const { attempt } = await publish(
      [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v5')].join(' UNION ALL '),
    );
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.events'::regclass`,
    );
    expect(rows[0]).toEqual({ n: 2 });
    expect((await attempt()).status).toBe('swapped');
  });

  it('creates the partition of a new day like its neighbours, and fills it', async () => {
    const { attempt } = await publish(
      [...DAYS, '2024-01-05'].map((day) => dayRows(day, 'v1')).join(' UNION ALL '),
    );
    const { rows: created } = await admin.query(
      `SELECT pg_get_expr(c.relpartbound, c.oid) AS bound, pg_get_userbyid(c.relowner) = $1 AS owned,
              (SELECT count(*)::int FROM public.events_2024_01_05) AS n
       FROM pg_class c WHERE c.oid = 'public.events_2024_01_05'::regclass`,
      [roles.owner],
    );
    // Attached empty before the swap: readers saw no rows of that day before, and see none yet.
    expect(created).toEqual([
      { bound: "FOR VALUES FROM ('2024-01-05') TO ('2024-01-06')", owned: true, n: 0 },
    ]);
    expect((await attempt()).status).toBe('swapped');
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n, (SELECT count(*)::int FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid
                                  WHERE x.indrelid = 'public.events_2024_01_05'::regclass) AS "attachedIndexes"
       FROM public.events WHERE day = '2024-01-05'`,
    );
    expect(rows).toEqual([{ n: 3, attachedIndexes: 2 }]);
  });

  it('refuses rows outside every partition of an irregular table, naming their range; a DEFAULT partition takes them', async () => {
    // Two days in one partition: no regular interval to create partitions by.
    await admin.query(
      `SET ROLE ${roles.owner}; CREATE TABLE public.events_later PARTITION OF public.events FOR VALUES FROM ('2024-01-04') TO ('2024-01-06'); RESET ROLE`,
    );
    const outside = [
      dayRows(DAYS[0]!, 'v1'),
      dayRows('2024-01-09', 'v1'),
      dayRows('2024-01-07', 'v1'),
    ];
    const error = await publish(outside.join(' UNION ALL ')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RowsOutsidePartitionsError);
    expect((error as Error).message).toContain('6 rows of the source fall outside every partition');
    expect((error as Error).message).toContain('(2024-01-07) to (2024-01-09)');
    await admin.query(
      `SET ROLE ${roles.owner}; CREATE TABLE public.events_other PARTITION OF public.events DEFAULT; RESET ROLE`,
    );
    const { attempt } = await publish(
      [...outside, dayRows(DAYS[1]!, 'v1'), dayRows(DAYS[2]!, 'v1')].join(' UNION ALL '),
    );
    expect((await attempt()).status).toBe('swapped');
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM public.events_other');
    expect(rows[0]).toEqual({ n: 6 });
  });
});

describe('the preflight of a partitioned live table', () => {
  it('names an owner the pipeline cannot act as, and refuses truncate', async () => {
    const stranger = uniqueRoles('stranger').stranger;
    await admin.query(
      `CREATE ROLE ${stranger}; ALTER TABLE public.events_2024_01_03 OWNER TO ${stranger}`,
    );
    const staging = { schema: 'redshift_sync_staging', name: 'unused' };
    const error = await preflight(sql, [{ live: events, staging, strategy: 'rename' }]).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PreflightError);
    expect((error as PreflightError).problems).toEqual([
      `public.events: the pipeline's database role must act as role ${stranger} (which owns partition public.events_2024_01_03) to detach, replace and attach partitions; run GRANT ${stranger} TO <pipeline role>.`,
    ]);
    const truncate = await preflight(sql, [{ live: events, staging, strategy: 'truncate' }]).catch(
      (e: unknown) => e,
    );
    expect((truncate as PreflightError).problems).toEqual([
      'public.events is a partitioned table, which strategy "truncate" does not publish into (TRUNCATE would empty every partition and lock them all for the whole copy); remove "strategy" (the default, "rename", replaces only the partitions whose rows changed) or use "merge".',
    ]);
  });
});

describe('a month-partitioned live table', () => {
  const sales: QualifiedName = { schema: 'public', name: 'sales' };

  beforeEach(async () => {
    await admin.query(`
      SET ROLE ${roles.owner};
      CREATE TABLE public.sales (sold_at timestamp NOT NULL, amount numeric) PARTITION BY RANGE (sold_at);
      CREATE TABLE public.sales_2024_01 PARTITION OF public.sales FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
      CREATE TABLE public.sales_2024_02 PARTITION OF public.sales FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');
      INSERT INTO public.sales SELECT '2024-01-01'::timestamp + g * interval '1 day', g FROM generate_series(0, 59) g;
      GRANT SELECT ON public.sales_2024_02 TO ${roles.analyst};
      RESET ROLE;
    `);
  });

  it('replaces the changed month only, and creates a new month like the latest one', async () => {
    const { rows: before } = await admin.query(
      `SELECT 'public.sales_2024_01'::regclass::oid::int AS january, 'public.sales_2024_02'::regclass::oid::int AS february`,
    );
    const { attempt } = await publish(
      `SELECT '2024-01-01'::timestamp + g * interval '1 day', CASE WHEN g = 40 THEN -1 ELSE g END
       FROM generate_series(0, 75) g`,
      { live: sales },
    );
    expect((await attempt()).status).toBe('swapped');
    const { rows } = await admin.query(
      `SELECT c.relname AS name, c.oid::int AS oid, pg_get_expr(c.relpartbound, c.oid) AS bound,
              has_table_privilege($1, c.oid, 'SELECT') AS granted
       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = 'public.sales'::regclass ORDER BY 1`,
      [roles.analyst],
    );
    expect(rows.map((row) => [row.name, row.bound, row.granted])).toEqual([
      [
        'sales_2024_01',
        "FOR VALUES FROM ('2024-01-01 00:00:00') TO ('2024-02-01 00:00:00')",
        false,
      ],
      ['sales_2024_02', "FOR VALUES FROM ('2024-02-01 00:00:00') TO ('2024-03-01 00:00:00')", true],
      ['sales_2024_03', "FOR VALUES FROM ('2024-03-01 00:00:00') TO ('2024-04-01 00:00:00')", true],
    ]);
    expect(rows[0].oid).toBe(before[0].january);
    expect(rows[1].oid).not.toBe(before[0].february);
    const { rows: totals } = await admin.query(
      `SELECT count(*)::int AS n, min(amount)::int AS least FROM public.sales`,
    );
    expect(totals).toEqual([{ n: 76, least: -1 }]);
  });
});

describe('the DDL done on a partitioned live table before the swap', () => {
  /** Short attempts, a short backoff ceiling, and `maxWaitSeconds` in all. */
  const locks = (maxWaitSeconds: number): LockRetrySettings => ({
    lockTimeoutMs: 50,
    pollIntervalSeconds: 0.2,
    maxWaitSeconds,
  });
  const withNewDay = [...DAYS, '2024-01-05'].map((day) => dayRows(day, 'v1')).join(' UNION ALL ');

  /** A session holding `lock` in an open transaction until its COMMIT. */
  async function holding(application: string, lock: string): Promise<pg.Client> {
    const session = await db.connect(application);
    await session.query('BEGIN');
    await session.query(lock);
    return session;
  }

  it('creates a new day once a conflicting lock on the parent is released within the wait', async () => {
    const maintenance = await holding(
      'nightly-maintenance',
      'LOCK TABLE public.events IN SHARE UPDATE EXCLUSIVE MODE',
    );
    // While the lock is held, each attempt shows in pg_stat_activity with a start of its own.
    const attemptsSeen = new Set<string>();
    const release = (async () => {
      for (const until = Date.now() + 600; Date.now() < until; ) {
        const { rows } = await admin.query<{ started: string }>(
          `SELECT query_start::text AS started FROM pg_stat_activity
           WHERE wait_event_type = 'Lock' AND query LIKE '%create_partition(%'`,
        );
        for (const row of rows) attemptsSeen.add(row.started);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await maintenance.query('COMMIT');
    })();
    const { attempt } = await publish(withNewDay, { locks: locks(10) });
    await release;
    // It tried again and again under a short lock_timeout, not once under a long one.
    expect(attemptsSeen.size).toBeGreaterThan(2);
    expect((await attempt()).status).toBe('swapped');
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM public.events_2024_01_05`);
    expect(rows).toEqual([{ n: 3 }]);
  });

  it('gives up when the lock is held past the wait, naming the table, the lock and its holder; live is unchanged', async () => {
    const before = await partitionFacts();
    const maintenance = await holding(
      'nightly-maintenance',
      'LOCK TABLE public.events IN SHARE UPDATE EXCLUSIVE MODE',
    );
    const started = Date.now();
    const error = await publish(withNewDay, { locks: locks(1) }).catch((e: unknown) => e);
    const waited = Date.now() - started;
    await maintenance.query('COMMIT');
    expect(error).toBeInstanceOf(PartitionLockTimeoutError);
    const message = (error as Error).message;
    expect(message).toMatch(
      /^public\.events: could not attach its new partition public\.events_2024_01_05 for 2024-01-05 to 2024-01-06/,
    );
    expect(message).toContain('it needs SHARE UPDATE EXCLUSIVE on public.events');
    expect(message).toMatch(/all \d+ attempts in [01]\.\d s, each waiting at most 50 ms/);
    expect(message).toMatch(
      /application "nightly-maintenance".*ShareUpdateExclusiveLock on public\.events/s,
    );
    expect(message).toContain('public.events is unchanged');
    // Bounded by maxWaitSeconds, give or take one attempt and the look at the holders.
    expect(waited).toBeLessThan(3_000);
    expect(await partitionFacts()).toEqual(before);
    const { rows } = await admin.query(`SELECT count(*)::int AS n FROM public.events`);
    expect(rows).toEqual([{ n: 9 }]);
    // Once the holder is gone, the next run creates the day.
    const { attempt } = await publish(withNewDay, { locks: locks(1) });
    expect((await attempt()).status).toBe('swapped');
  });

  it('finishes a pending detach once a reader of the partition lets it, and gives up naming it when it does not', async () => {
    await leaveDetachPending();
    const twoDays = [dayRows(DAYS[0]!, 'v1'), dayRows(DAYS[1]!, 'v7')].join(' UNION ALL ');
    const reader = await holding(
      'day-three-report',
      'SELECT count(*) FROM public.events_2024_01_03',
    );
    const error = await publish(twoDays, { locks: locks(1) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PartitionLockTimeoutError);
    expect((error as Error).message).toMatch(
      /^public\.events: could not finish the pending detach of partition public\.events_2024_01_03 .*application "day-three-report".*AccessShareLock on public\.events_2024_01_03/s,
    );
    const { rows: pending } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.events'::regclass AND inhdetachpending`,
    );
    expect(pending).toEqual([{ n: 1 }]);
    const release = new Promise((resolve) => setTimeout(resolve, 400)).then(() =>
      reader.query('COMMIT'),
    );
    const { attempt } = await publish(twoDays, { locks: locks(10) });
    await release;
    expect((await attempt()).status).toBe('swapped');
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM pg_inherits WHERE inhparent = 'public.events'::regclass`,
    );
    expect(rows).toEqual([{ n: 2 }]);
  });
});
