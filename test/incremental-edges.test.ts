/**
 * Incremental sync at its edges, through the whole local pipeline as the pipeline's
 * non-superuser role: a cursor that is NULL in the source, a live table whose watermark went
 * stale (synced without `incremental`, or rolled back), a date cursor in mode append, and two
 * increments failing their proof in one run.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { freshDatabase, type TestDatabase } from './support/db';
import { rowsOf, runLocally, tableOf } from './support/local-pipeline';

let sourceDb: TestDatabase;
let targetDb: TestDatabase;
let source: pg.Client;
let target: pg.Client;
let s3Dir: string;

const LOCKS = { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' };

beforeAll(async () => {
  sourceDb = await freshDatabase();
  targetDb = await freshDatabase();
  source = await sourceDb.connect('test setup');
  target = await targetDb.connect('test setup');
  s3Dir = await mkdtemp(join(tmpdir(), 'incremental-edges-bucket-'));
  await chmod(s3Dir, 0o755);
  await source.query('CREATE SCHEMA sales');
  // The pipeline creates each live table on its first run, and so owns it.
  await target.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${targetDb.pipelineLogin.user}`);
});

function run(config: unknown, request: Record<string, unknown> = {}): Promise<RunSummary> {
  return runLocally({ source: sourceDb, target: targetDb, s3Dir, config, request });
}

async function expectInSync(sourceTable: string, liveTable: string, order: string) {
  expect(await rowsOf(target, liveTable, order)).toEqual(await rowsOf(source, sourceTable, order));
}

async function watermarkOf(name: string): Promise<{ watermark: string; reason: string | null }> {
  const { rows } = await target.query(
    `SELECT watermark, full_refresh_reason AS reason FROM redshift_sync.watermarks
      WHERE target_schema = 'public' AND target_table = $1`,
    [name],
  );
  return rows[0];
}

describe('a cursor that is NULL in the source', () => {
  const TABLE = {
    source: 'sales.tickets',
    target: 'public.tickets',
    primaryKey: ['id'],
    incremental: { cursor: 'updated_at', mode: 'merge' },
  };
  const CONFIG = { tables: [TABLE], locks: LOCKS };
  const NULL_REASON =
    /^the cursor updated_at was NULL in (\d+) rows? of the source table sales\.tickets at the last run: an increment cannot see a row whose cursor is NULL \(inserted with NULL, or updated to NULL\), so every run of this table is full until none is; make updated_at NOT NULL in the source \(fill its NULLs, e\.g\. with the row's creation time, and set it on every insert and update\), or name a cursor that is never NULL\.$/;

  it('fails the increment that meets a new NULL, naming the column and what to do', async () => {
    await source.query(`
      CREATE TABLE sales.tickets (id int PRIMARY KEY, title text, updated_at timestamptz);
      INSERT INTO sales.tickets
        SELECT g, 'ticket ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
        FROM generate_series(1, 5) g;
    `);
    expect((await run(CONFIG)).error).toBeNull();
    await source.query(`INSERT INTO sales.tickets VALUES (6, 'no cursor yet', NULL)`);
    const failed = await run(CONFIG);
    expect(failed.status).toBe('FAILED');
    expect(failed.error!.message).toContain(
      'the increment of "public"."tickets" was not applied: its cursor updated_at is NULL in 1 row of the source table (0 in live), and an increment never sends a row whose cursor is NULL (inserted with NULL, or updated to NULL). Make updated_at NOT NULL in the source (fill its NULLs, e.g. with the row\'s creation time, and set it on every insert and update), or name a cursor that is never NULL; until then every run of this table is full.',
    );
    expect((await watermarkOf('tickets')).reason).toMatch(/^the last increment failed/);
  });

  it('then takes the table whole every run while the cursor has NULLs, saying why', async () => {
    const first = await run(CONFIG);
    expect(first.error).toBeNull();
    expect(tableOf(first, 'public.tickets')).toMatchObject({ mode: 'full' });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
    expect((await watermarkOf('tickets')).reason).toMatch(NULL_REASON);
    // A row updated to NULL is a change an increment could not see: a full run sees it.
    await source.query(
      `UPDATE sales.tickets SET title = 'reopened', updated_at = NULL WHERE id = 2`,
    );
    const second = await run(CONFIG);
    expect(second.error).toBeNull();
    expect(tableOf(second, 'public.tickets')).toMatchObject({
      mode: 'full',
      fullRefreshReason: expect.stringMatching(NULL_REASON),
    });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
    expect((await watermarkOf('tickets')).reason).toMatch(NULL_REASON);
    expect(NULL_REASON.exec((await watermarkOf('tickets')).reason!)![1]).toBe('2');
  });

  it('goes back to increments once the source has no NULL cursor', async () => {
    await source.query(
      `UPDATE sales.tickets SET updated_at = '2026-02-01 00:00:00+00' WHERE updated_at IS NULL`,
    );
    const full = await run(CONFIG);
    expect(tableOf(full, 'public.tickets')).toMatchObject({ mode: 'full' });
    expect((await watermarkOf('tickets')).reason).toBeNull();
    await source.query(
      `UPDATE sales.tickets SET title = 'edited', updated_at = '2026-02-02 00:00:00+00' WHERE id = 1`,
    );
    const increment = await run(CONFIG);
    expect(increment.error).toBeNull();
    expect(tableOf(increment, 'public.tickets')).toMatchObject({
      mode: 'incremental',
      updated: 1,
    });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
  });
});
