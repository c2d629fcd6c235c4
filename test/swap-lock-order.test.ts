/**
 * The swap's lock order on real PostgreSQL, run as the pipeline's non-superuser login: readers
 * of a view on the live table do not make `rename` fail (views are locked before the tables
 * they read), and the swap takes every lock it needs up front.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { attemptSwap, installSchema, prepareStaging } from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import type { SwapStrategy } from '../lambdas/core/swap/types';
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
