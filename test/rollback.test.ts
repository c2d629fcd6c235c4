/**
 * `npm run rollback`'s core (ops/rollback.ts) on real PostgreSQL: it goes through the same lock
 * gate as a run's swap, so a long reader of the live table is waited for (looked up in
 * pg_locks) rather than hit with an exclusive request every second, and named when it outlasts
 * maxWaitSeconds.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import type { SwapProgress } from '../lambdas/core/swap/gate';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError } from '../lambdas/core/swap/policy';
import { rollbackTable } from '../ops/rollback';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('pipeline');
let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;
let pipeline: pg.Client;
let tableCount = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A live table swapped once with `rename`, so its previous version ('old' rows) is retired. */
async function swappedOnce(): Promise<{ live: QualifiedName; quoted: string }> {
  const name = `r${++tableCount}`;
  const live: QualifiedName = { schema: 'public', name };
  const quoted = `public.${name}`;
  await admin.query(`CREATE TABLE ${quoted} (id int PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO ${quoted} SELECT g, 'old' FROM generate_series(1, 100) g`);
  await admin.query(`ALTER TABLE ${quoted} OWNER TO ${roles.pipeline}`);
  const staging = await createStaging(
    pipeline,
    live,
    `${name}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 50) g`,
  );
  await prepareStaging(sql, { live, staging });
  const plan = buildSwapPlan([{ live, staging, strategy: 'rename' }], { runId: `run-${name}` });
  expect(await attemptSwap(sql, plan)).toMatchObject({ status: 'swapped' });
  return { live, quoted };
}

async function contents(quoted: string): Promise<{ n: number; v: string }> {
  const { rows } = await admin.query(`SELECT count(*)::int AS n, min(v) AS v FROM ${quoted}`);
  return rows[0];
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  ({ sql, client: pipeline } = await pipelineSession(db, roles.pipeline, []));
  await admin.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${roles.pipeline}`);
});

describe('rollback under a long reader', () => {
  it('waits for the reader instead of hammering it with exclusive requests, then rolls back', async () => {
    const table = await swappedOnce();
    const reader = await db.connect('month-end-report');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${table.quoted}`);
    const releaseAt = performance.now() + 3000;
    const release = sleep(3000).then(() => reader.query('COMMIT'));
    const progress: SwapProgress[] = [];

    const result = await rollbackTable(sql, table.live, {
      lockTimeoutMs: 200,
      graceSeconds: 0.5,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 30,
      onProgress: (step) => progress.push(step),
    });
    const doneAt = performance.now();
    await release;

    expect(doneAt).toBeGreaterThanOrEqual(releaseAt - 50);
    // Exclusive requests only while the reader was younger than grace; then it waited.
    expect(progress.filter((step) => step.kind === 'busy').length).toBeLessThanOrEqual(3);
    expect(result.attempts).toBeLessThanOrEqual(4);
    const waiting = progress.filter((step) => step.kind === 'waiting');
    expect(waiting.length).toBeGreaterThan(3);
    expect(waiting[0]!.blockers![0]!.reason).toMatch(/application "month-end-report"/);
    expect(await contents(table.quoted)).toEqual({ n: 100, v: 'old' });
  });

  it('gives up after maxWaitSeconds naming the reader, and leaves the table as it was', async () => {
    const table = await swappedOnce();
    const reader = await db.connect('month-end-report');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${table.quoted}`);

    const error = await rollbackTable(sql, table.live, {
      lockTimeoutMs: 200,
      graceSeconds: 0.2,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 1,
    }).catch((e: unknown) => e);
    await reader.query('COMMIT');

    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    expect((error as Error).message).toMatch(
      /live tables are unchanged.*\n- idleInTransaction: pid \d+ .*application "month-end-report".*in an open transaction that is idle/s,
    );
    expect(await contents(table.quoted)).toEqual({ n: 50, v: 'new' });
  });
});
