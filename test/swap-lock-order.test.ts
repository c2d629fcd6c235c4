/**
 * The swap's lock order on real PostgreSQL, run as the pipeline's non-superuser login: readers
 * of a view on the live table do not make `rename` fail (views are locked before the tables
 * they read), and the swap takes every lock it needs up front.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { LOCK_MODES } from '../lambdas/core/locks/conflicts';
import { inspectLocks } from '../lambdas/core/locks/inspect';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { lockTargets } from '../lambdas/core/swap/gate';
import { buildSwapPlan, type SwapPlan } from '../lambdas/core/swap/plan';
import type { LockMode, SwapStrategy } from '../lambdas/core/swap/types';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner');
let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;
let tableCount = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  // What a user has: a schema and its tables and views owned by a role of theirs, which the
  // pipeline's login is a member of (as the README asks).
  await admin.query(`CREATE ROLE ${roles.owner} NOLOGIN`);
  await admin.query(`CREATE SCHEMA app AUTHORIZATION ${roles.owner}`);
  await admin.query(`GRANT ${roles.owner} TO ${db.pipelineLogin.user}`);
  pipeline = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sql = new PgSqlClient(pipeline);
  await installSchema(sql);
});

/**
 * A live table `app.tN` (serial key) with a view on it and a view on that view, all owned by
 * the user's role, and a prepared staging table with 500 new rows.
 */
async function liveWithViews(strategy: SwapStrategy) {
  const name = `t${++tableCount}`;
  const live: QualifiedName = { schema: 'app', name };
  await admin.query(`SET ROLE ${roles.owner}`);
  await admin.query(`CREATE TABLE app.${name} (id int PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO app.${name} SELECT g, 'old' FROM generate_series(1, 1000) g`);
  await admin.query(`CREATE VIEW app.${name}_v AS SELECT id, v FROM app.${name}`);
  await admin.query(`CREATE VIEW app.${name}_vv AS SELECT count(*) AS n FROM app.${name}_v`);
  await admin.query('RESET ROLE');
  const staging = await createStaging(
    pipeline,
    live,
    `${name}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 500) g`,
  );
  await prepareStaging(sql, { live, staging });
  return {
    live,
    staging,
    view: `app.${name}_v`,
    plan: (runId: string, lockTimeoutMs = 500) =>
      buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], { runId, lockTimeoutMs }),
  };
}

/** `clients` sessions, each reading `relation` in a loop every `intervalMs` until stopped. */
async function readersOf(relation: string, clients: number, intervalMs: number) {
  const sessions = await Promise.all(
    Array.from({ length: clients }, () => db.connect('dashboard')),
  );
  let running = true;
  const errors: string[] = [];
  let reads = 0;
  const loops = sessions.map(async (session, index) => {
    await sleep(index * 3);
    while (running) {
      try {
        await session.query(`SELECT count(*) FROM ${relation}`);
        reads += 1;
      } catch (error) {
        errors.push((error as Error).message);
      }
      await sleep(intervalMs);
    }
  });
  return {
    errors,
    reads: () => reads,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

describe('swap lock order', () => {
  it('rename goes through while three clients read a view on the live table every 10 ms', async () => {
    const table = await liveWithViews('rename');
    const readers = await readersOf(table.view, 3, 10);
    await sleep(300);
    const outcomes: string[] = [];
    try {
      for (let attempt = 1; attempt <= 8; attempt += 1) {
        const outcome = await attemptSwap(sql, table.plan('view-readers'));
        outcomes.push(outcome.status === 'swapped' ? 'swapped' : outcome.reason);
        if (outcome.status === 'swapped') break;
        await sleep(50);
      }
    } finally {
      await readers.stop();
    }
    // On the old order (tables first, views when re-pointed) every attempt was a lock timeout.
    expect(outcomes).toContain('swapped');
    expect(outcomes.length).toBeLessThanOrEqual(3);
    expect(readers.errors).toEqual([]);
    expect(readers.reads()).toBeGreaterThan(10);
    const { rows } = await admin.query(`SELECT count(*)::int AS n, min(v) AS v FROM ${table.view}`);
    expect(rows[0]).toEqual({ n: 500, v: 'new' });
  });
});

/**
 * A live table `app.tN` with a serial key, a view that also reads a table the swap does not
 * touch, and a staging table with a serial column of its own (so it owns a sequence).
 */
async function liveWithSequences(strategy: SwapStrategy) {
  const name = `t${++tableCount}`;
  const live: QualifiedName = { schema: 'app', name };
  const staging: QualifiedName = { schema: STAGING_SCHEMA, name: `${name}_staging` };
  await admin.query(`SET ROLE ${roles.owner}`);
  await admin.query(`CREATE TABLE app.${name}_dim (id int PRIMARY KEY)`);
  await admin.query(`CREATE TABLE app.${name} (id serial PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO app.${name} (v) SELECT 'old' FROM generate_series(1, 100)`);
  await admin.query(
    `CREATE VIEW app.${name}_v AS SELECT t.id, t.v FROM app.${name} t JOIN app.${name}_dim d USING (id)`,
  );
  await admin.query('RESET ROLE');
  await pipeline.query(
    `CREATE TABLE ${STAGING_SCHEMA}.${staging.name} (id serial NOT NULL, v text)`,
  );
  await pipeline.query(
    `INSERT INTO ${STAGING_SCHEMA}.${staging.name} (id, v) SELECT g, 'new' FROM generate_series(1, 50) g`,
  );
  await prepareStaging(sql, { live, staging });
  return {
    live,
    staging,
    plan: buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], {
      runId: `sequences-${name}`,
    }),
  };
}

const rank = (mode: string) => LOCK_MODES.indexOf(mode as LockMode);

/**
 * Runs the swap in a transaction of the pipeline's session, reads the locks that transaction
 * holds, and rolls back. Relations are named as they were before the swap (the swap renames).
 */
async function swapAndReadLocks(plan: SwapPlan) {
  const { rows: before } = await admin.query<{ oid: number; name: string; kind: string }>(
    `SELECT c.oid::int AS oid, c.oid::regclass::text AS name, c.relkind::text AS kind
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname IN ('app', $1)`,
    [STAGING_SCHEMA],
  );
  const named = new Map(before.map((row) => [row.oid, row]));
  await pipeline.query('BEGIN');
  try {
    const { rows } = await pipeline.query<{ result: string }>(
      'SELECT redshift_sync.swap($1::jsonb)::text AS result',
      [JSON.stringify(plan)],
    );
    const result = JSON.parse(rows[0]!.result) as {
      locks: { relation: string; mode: string }[];
    };
    const { rows: held } = await pipeline.query<{ oid: number; mode: string; schema: string }>(
      `SELECT l.relation::int AS oid, l.mode,
              (SELECT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.oid = l.relation) AS schema
       FROM pg_locks l
       WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    return {
      locks: result.locks,
      held: held.map((lock) => ({ ...lock, relation: named.get(lock.oid) })),
    };
  } finally {
    await pipeline.query('ROLLBACK');
  }
}

describe('the locks a swap takes', () => {
  it.each(['truncate', 'merge'] as const)(
    '%s locks staging and its sequence ACCESS EXCLUSIVE first, and nothing it did not lock up front',
    async (strategy) => {
      const table = await liveWithSequences(strategy);
      const { locks, held } = await swapAndReadLocks(table.plan);
      const live = `app.${table.live.name}`;
      expect(locks).toEqual([
        { relation: `${STAGING_SCHEMA}.${table.staging.name}`, mode: 'AccessExclusiveLock' },
        {
          relation: `${STAGING_SCHEMA}.${table.staging.name}_id_seq`,
          mode: 'AccessExclusiveLock',
        },
        {
          relation: live,
          mode: strategy === 'truncate' ? 'AccessExclusiveLock' : 'RowExclusiveLock',
        },
      ]);
      // Every lock the transaction holds on a user's or a staging relation (indexes follow
      // their tables) was taken up front, at least as strong: nothing waited for later.
      for (const lock of held) {
        if (!lock.relation) {
          expect(lock.schema ?? 'dropped').toMatch(/^(pg_catalog|pg_toast|redshift_sync|dropped)$/);
          continue;
        }
        if (lock.relation.kind === 'i') continue;
        const upFront = locks.find((taken) => taken.relation === lock.relation!.name);
        expect(upFront, `${lock.relation.name} ${lock.mode}`).toBeDefined();
        expect(rank(upFront!.mode)).toBeGreaterThanOrEqual(rank(lock.mode));
      }
    },
  );

  it('rename locks staging, then the views outermost first, then live, then its sequence', async () => {
    const table = await liveWithViews('rename');
    const name = table.live.name;
    // A second view on the table that also reads the first (a reader locks it, then the first)
    // and a table the swap does not touch.
    await admin.query(`SET ROLE ${roles.owner}`);
    await admin.query(`CREATE TABLE app.${name}_dim (id int PRIMARY KEY)`);
    await admin.query(
      `CREATE VIEW app.${name}_a AS SELECT v.id FROM app.${name}_v v JOIN app.${name} t USING (id)
       JOIN app.${name}_dim d USING (id)`,
    );
    await admin.query('RESET ROLE');
    const { locks, held } = await swapAndReadLocks(table.plan('order'));
    expect(locks).toEqual([
      { relation: `${STAGING_SCHEMA}.${name}_staging`, mode: 'AccessExclusiveLock' },
      { relation: `app.${name}_a`, mode: 'AccessExclusiveLock' },
      { relation: `app.${name}_v`, mode: 'AccessExclusiveLock' },
      { relation: `app.${name}`, mode: 'AccessExclusiveLock' },
    ]);
    // The view over a view (_vv) is not re-pointed, so it is not locked at all.
    expect(held.map((lock) => lock.relation?.name)).not.toContain(`app.${name}_vv`);
    for (const lock of held) {
      if (!lock.relation || lock.relation.kind === 'i') continue;
      // Re-pointing a view reads the tables it selects from, as its readers do: no more.
      if (lock.relation.name === `app.${name}_dim`) {
        expect(lock.mode).toBe('AccessShareLock');
        continue;
      }
      const upFront = locks.find((taken) => taken.relation === lock.relation!.name);
      expect(upFront, `${lock.relation.name} ${lock.mode}`).toBeDefined();
      expect(rank(upFront!.mode)).toBeGreaterThanOrEqual(rank(lock.mode));
    }
  });

  it('rename locks the sequence of a serial key after its table, and not the tables its views read', async () => {
    const table = await liveWithSequences('rename');
    const { rows } = await pipeline.query<{ relation: string; lock_mode: string }>(
      'SELECT relation::text, lock_mode FROM redshift_sync.swap_locks($1::jsonb)',
      [JSON.stringify(table.plan)],
    );
    expect(rows).toEqual([
      { relation: `${STAGING_SCHEMA}.${table.staging.name}`, lock_mode: 'AccessExclusiveLock' },
      {
        relation: `${STAGING_SCHEMA}.${table.staging.name}_id_seq`,
        lock_mode: 'AccessExclusiveLock',
      },
      { relation: `app.${table.live.name}_v`, lock_mode: 'AccessExclusiveLock' },
      { relation: `app.${table.live.name}`, lock_mode: 'AccessExclusiveLock' },
      { relation: `app.${table.live.name}_id_seq`, lock_mode: 'AccessExclusiveLock' },
    ]);
  });
});

describe('the lock check', () => {
  it('covers staging, the views and the sequences the swap locks', () => {
    const live = { schema: 'app', name: 'x' };
    const staging = { schema: STAGING_SCHEMA, name: 'x_staging' };
    const targets = (strategy: SwapStrategy) =>
      lockTargets(buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], { runId: 'r' }));
    expect(targets('rename')).toEqual([
      {
        relation: staging,
        mode: 'AccessExclusiveLock',
        includeDependentViews: false,
        includeOwnedSequences: true,
      },
      {
        relation: live,
        mode: 'AccessExclusiveLock',
        includeDependentViews: true,
        includeOwnedSequences: true,
      },
    ]);
    expect(targets('merge')).toEqual([
      {
        relation: staging,
        mode: 'AccessExclusiveLock',
        includeDependentViews: false,
        includeOwnedSequences: true,
      },
      {
        relation: live,
        mode: 'RowExclusiveLock',
        includeDependentViews: false,
        includeOwnedSequences: false,
      },
    ]);
  });

  it('sees a session holding a lock on the view only, on a sequence only, or on staging', async () => {
    const table = await liveWithSequences('rename');
    const name = table.live.name;
    const onView = await db.connect('view-only');
    await onView.query('BEGIN');
    // COMMENT takes SHARE UPDATE EXCLUSIVE on the view alone, not on the table under it.
    await onView.query(`COMMENT ON VIEW app.${name}_v IS 'being documented'`);
    const onSequence = await db.connect('sequence-only');
    await onSequence.query('BEGIN');
    await onSequence.query(`SELECT nextval('app.${name}_id_seq')`);
    const onStaging = await db.connect('staging-reader');
    await onStaging.query('BEGIN');
    await onStaging.query(`SELECT count(*) FROM ${STAGING_SCHEMA}.${table.staging.name}`);
    try {
      const holders = await inspectLocks(sql, lockTargets(table.plan));
      const seen = holders.map(
        (holder) => `${holder.applicationName} ${holder.relation.schema}.${holder.relation.name}`,
      );
      expect(seen).toEqual(
        expect.arrayContaining([
          `view-only app.${name}_v`,
          `sequence-only app.${name}_id_seq`,
          `staging-reader ${STAGING_SCHEMA}.${table.staging.name}`,
        ]),
      );
      expect(seen.filter((entry) => entry.startsWith('view-only'))).toEqual([
        `view-only app.${name}_v`,
      ]);
      // merge leaves live's sequence alone, but its staging reader still blocks the DROP.
      const mergePlan = buildSwapPlan(
        [{ live: table.live, staging: table.staging, strategy: 'merge', primaryKey: ['id'] }],
        { runId: 'merge-check' },
      );
      const mergeSeen = (await inspectLocks(sql, lockTargets(mergePlan))).map(
        (holder) => `${holder.applicationName} ${holder.targetMode}`,
      );
      expect(mergeSeen).toContain('staging-reader AccessExclusiveLock');
      expect(mergeSeen.some((entry) => entry.startsWith('sequence-only'))).toBe(false);
    } finally {
      await Promise.all([onView, onSequence, onStaging].map((c) => c.query('ROLLBACK')));
    }
  });
});
