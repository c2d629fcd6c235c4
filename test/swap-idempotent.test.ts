/**
 * A swap call repeated after it committed (its answer lost to a Data API cut-off, or a Lambda
 * retry) answers "already swapped" with what the first call did, and changes nothing; run as
 * the pipeline's non-superuser login on real PostgreSQL.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { installSchema } from '../lambdas/core/schema/install';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
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

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  await admin.query(`CREATE ROLE ${roles.owner} NOLOGIN`);
  await admin.query(`CREATE SCHEMA app AUTHORIZATION ${roles.owner}`);
  await admin.query(`GRANT ${roles.owner} TO ${db.pipelineLogin.user}`);
  pipeline = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sql = new PgSqlClient(pipeline);
  await installSchema(sql);
});

/** A live table with 100 old rows and a view on it, and a prepared staging table of 50 new rows. */
async function liveAndStaging(strategy: SwapStrategy) {
  const name = `t${++tableCount}`;
  const live: QualifiedName = { schema: 'app', name };
  await admin.query(`SET ROLE ${roles.owner}`);
  await admin.query(`CREATE TABLE app.${name} (id int PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO app.${name} SELECT g, 'old' FROM generate_series(1, 100) g`);
  await admin.query(`CREATE VIEW app.${name}_v AS SELECT id, v FROM app.${name}`);
  await admin.query('RESET ROLE');
  const staging = await createStaging(
    pipeline,
    live,
    `${name}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 50) g`,
  );
  await prepareStaging(sql, { live, staging });
  return {
    live,
    staging,
    plan: (runId: string, lockTimeoutMs?: number) =>
      buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], { runId, lockTimeoutMs }),
  };
}

/** What a user sees: the rows through the view, the table's identity, the retired versions. */
async function snapshot(live: QualifiedName) {
  const { rows } = await admin.query(
    `SELECT (SELECT count(*)::int FROM app.${live.name}_v) AS n,
            (SELECT min(v) FROM app.${live.name}_v) AS v,
            'app.${live.name}'::regclass::oid::int AS oid,
            (SELECT count(*)::int FROM redshift_sync.retired_versions WHERE live_table = $1) AS retired`,
    [live.name],
  );
  return rows[0];
}

describe('idempotent swap', () => {
  it.each(['rename', 'truncate', 'merge'] as const)(
    '%s: the same plan again answers already swapped with the first result, changing nothing',
    async (strategy) => {
      const table = await liveAndStaging(strategy);
      const first = await attemptSwap(sql, table.plan('run-1'));
      expect(first).toMatchObject({ status: 'swapped', alreadySwapped: false });
      const after = await snapshot(table.live);
      expect(after).toMatchObject({ n: 50, v: 'new' });

      // A retry may come with another lock_timeout (the step raises it for autovacuum).
      const again = await attemptSwap(sql, table.plan('run-1', 1500));
      expect(again).toMatchObject({ status: 'swapped', alreadySwapped: true });
      if (first.status !== 'swapped' || again.status !== 'swapped') throw new Error('unreachable');
      expect(again.result).toEqual(first.result);
      expect(await snapshot(table.live)).toEqual(after);
    },
  );

  it('a retry that waited for the first call to commit answers already swapped', async () => {
    const table = await liveAndStaging('truncate');
    const first = await db.connect('first-call', db.pipelineLogin);
    await first.query('BEGIN');
    await first.query('SELECT redshift_sync.swap($1::jsonb)', [
      JSON.stringify(table.plan('run-2')),
    ]);
    // The retry queues for the staging lock the first call holds, then finds the run recorded.
    const retry = attemptSwap(sql, table.plan('run-2', 10_000));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await first.query('COMMIT');
    expect(await retry).toMatchObject({ status: 'swapped', alreadySwapped: true });
    expect(await snapshot(table.live)).toMatchObject({ n: 50, v: 'new' });
  });

  it('another run, or the same run id on other tables, still fails on a missing staging table', async () => {
    const table = await liveAndStaging('rename');
    await attemptSwap(sql, table.plan('run-3'));
    await expect(attemptSwap(sql, table.plan('run-4'))).rejects.toThrow(PreflightError);
    const other = await liveAndStaging('rename');
    const sameRunOtherTable = buildSwapPlan(
      [{ live: other.live, staging: table.staging, strategy: 'rename' }],
      { runId: 'run-3' },
    );
    await expect(attemptSwap(sql, sameRunOtherTable)).rejects.toThrow(/does not exist/);
    expect(await snapshot(other.live)).toMatchObject({ n: 100, v: 'old' });
  });
});
