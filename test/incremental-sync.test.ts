/**
 * Incremental sync through the whole local pipeline (the synthesized state machine, a
 * PostgreSQL source standing in for Redshift with UNLOAD emulated, a PostgreSQL target for
 * Aurora, the pipeline as its non-superuser role): a first full run, then increments in mode
 * merge and append, rows changed with a repeated cursor value, a run with nothing to do that
 * writes nothing, a cursor that goes backwards (the proof fails, live stays, the next run is
 * full and says why), a full refresh asked for, and cursors refused by name.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { DryRunSummary } from '../lambdas/pipeline/steps/prepare';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { rowsOf, runLocally, tableOf } from './support/local-pipeline';

let ground: DatabasesAndBucket;

const ITEMS = {
  source: 'sales.items',
  target: 'public.items',
  incremental: { cursor: 'updated_at', mode: 'merge' },
};
const LOG = {
  source: 'sales.log',
  target: 'public.log',
  incremental: { cursor: 'seq', mode: 'append' },
};
const CONFIG = {
  tables: [ITEMS, LOG],
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
};

beforeAll(async () => {
  ground = await databasesAndBucket('incremental-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.items (id bigint PRIMARY KEY, name text, price numeric(12,2), updated_at timestamptz);
    INSERT INTO sales.items
      SELECT g, 'item ' || g, g * 1.5, timestamptz '2026-01-01 00:00:00.000001+00' + g * interval '1 minute'
      FROM generate_series(1, 5) g;
    CREATE TABLE sales.log (seq bigint, msg text, ratio double precision);
    INSERT INTO sales.log SELECT g, 'line ' || g, g / 3.0 FROM generate_series(1, 4) g;
  `);
  await ground.target.query(`
    CREATE TABLE public.items (id bigint PRIMARY KEY, name text, price numeric(12,2), updated_at timestamptz);
    CREATE TABLE public.log (seq bigint, msg text, ratio double precision);
    ALTER TABLE public.items OWNER TO ${ground.owner};
    ALTER TABLE public.log OWNER TO ${ground.owner};
  `);
});

async function run(
  request: Record<string, unknown> = {},
  config: unknown = CONFIG,
): Promise<{ summary: RunSummary; progress: string[] }> {
  const progress: string[] = [];
  const summary = await runLocally({
    ...ground.runOn,
    config,
    request,
    onProgress: (line) => progress.push(line),
  });
  return { summary, progress };
}

async function expectInSync(): Promise<void> {
  expect(await rowsOf(ground.target, 'public.items', 'id')).toEqual(
    await rowsOf(ground.source, 'sales.items', 'id'),
  );
  expect(await rowsOf(ground.target, 'public.log', 'seq')).toEqual(
    await rowsOf(ground.source, 'sales.log', 'seq'),
  );
}

/** Each row's version: a row written again (even unchanged) gets a new xmin and ctid. */
async function versions(relation: string): Promise<string[]> {
  const { rows } = await ground.target.query(
    `SELECT xmin::text || ' ' || ctid::text AS version FROM ${relation} ORDER BY ctid`,
  );
  return rows.map((row: { version: string }) => row.version);
}

async function watermarks(): Promise<Record<string, unknown>[]> {
  const { rows } = await ground.target.query(
    `SELECT target_table, cursor_column, cursor_type, watermark, full_refresh_reason
       FROM redshift_sync.watermarks ORDER BY target_table`,
  );
  return rows;
}

describe('incremental sync', () => {
  it('takes a table whole on its first run, and records its watermark with the rows', async () => {
    const { summary } = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({
      status: 'swapped',
      mode: 'full',
      fullRefreshReason: 'no watermark yet: the first run',
      watermarkBefore: null,
      watermarkAfter: '2026-01-01 00:05:00.000001',
      rows: 5,
    });
    expect(tableOf(summary, 'public.log')).toMatchObject({ mode: 'full', watermarkAfter: '4' });
    await expectInSync();
    expect(await watermarks()).toEqual([
      {
        target_table: 'items',
        cursor_column: 'updated_at',
        cursor_type: 'timestamptz',
        watermark: '2026-01-01 00:05:00.000001',
        full_refresh_reason: null,
      },
      {
        target_table: 'log',
        cursor_column: 'seq',
        cursor_type: 'integer',
        watermark: '4',
        full_refresh_reason: null,
      },
    ]);
  });

  it('then moves only what changed: merge updates and inserts by key, append inserts', async () => {
    await ground.source.query(`
      UPDATE sales.items SET price = 99, updated_at = '2026-02-01 00:00:00+00' WHERE id = 2;
      INSERT INTO sales.items VALUES (6, 'item 6', 9, '2026-02-01 00:00:01+00');
      INSERT INTO sales.log VALUES (5, 'line 5', 0.5), (6, NULL, NULL);
    `);
    const untouched = (
      await ground.target.query(`SELECT xmin::text FROM public.items WHERE id = 1`)
    ).rows;
    const { summary } = await run();
    expect(summary.error).toBeNull();
    // The row at the watermark comes again (>=), unchanged, so it is not written.
    expect(tableOf(summary, 'public.items')).toMatchObject({
      mode: 'incremental',
      fullRefreshReason: null,
      watermarkBefore: '2026-01-01 00:05:00.000001',
      watermarkAfter: '2026-02-01 00:00:01.000000',
      rows: 3,
      inserted: 1,
      updated: 1,
      deleted: 0,
    });
    expect(tableOf(summary, 'public.log')).toMatchObject({
      mode: 'incremental',
      watermarkBefore: '4',
      watermarkAfter: '6',
      rows: 2,
      inserted: 2,
      updated: 0,
      deleted: 0,
    });
    await expectInSync();
    expect(
      (await ground.target.query(`SELECT xmin::text FROM public.items WHERE id = 1`)).rows,
    ).toEqual(untouched);
    const recorded = await ground.target.query(
      `SELECT target_table, mode, watermark_before, watermark_after, rows_inserted::int, rows_updated::int, rows_deleted::int
         FROM redshift_sync.runs WHERE run_id = $1 ORDER BY 1`,
      [summary.runId],
    );
    expect(recorded.rows).toEqual([
      {
        target_table: 'items',
        mode: 'incremental',
        watermark_before: '2026-01-01 00:05:00.000001',
        watermark_after: '2026-02-01 00:00:01.000000',
        rows_inserted: 1,
        rows_updated: 1,
        rows_deleted: 0,
      },
      {
        target_table: 'log',
        mode: 'incremental',
        watermark_before: '4',
        watermark_after: '6',
        rows_inserted: 2,
        rows_updated: 0,
        rows_deleted: 0,
      },
    ]);
  });

  it("misses no row that shares the watermark's cursor value (merge reads from it, inclusive)", async () => {
    // Committed after the last snapshot, with the cursor value that snapshot ended at.
    await ground.source.query(`
      UPDATE sales.items SET name = 'renamed', updated_at = '2026-02-01 00:00:01+00' WHERE id = 3;
      INSERT INTO sales.items VALUES (7, 'item 7', 7, '2026-02-01 00:00:01+00');
    `);
    const { summary } = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({
      mode: 'incremental',
      watermarkAfter: '2026-02-01 00:00:01.000000',
      inserted: 1,
      updated: 1,
    });
    await expectInSync();
  });

  it('writes nothing to live when nothing changed', async () => {
    const before = { items: await versions('public.items'), log: await versions('public.log') };
    const { summary } = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({
      mode: 'incremental',
      inserted: 0,
      updated: 0,
    });
    expect(tableOf(summary, 'public.log')).toMatchObject({
      mode: 'incremental',
      rows: 0,
      inserted: 0,
    });
    expect({ items: await versions('public.items'), log: await versions('public.log') }).toEqual(
      before,
    );
  });

  it('waits, as merge does, for a session holding a row lock on a row the increment changes', async () => {
    await ground.source.query(
      `UPDATE sales.items SET price = 1, updated_at = '2026-03-01 00:00:00+00' WHERE id = 1`,
    );
    const holder = await ground.targetDb.connect('row editor');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM public.items WHERE id = 1 FOR UPDATE');
    const released = new Promise((resolve) => setTimeout(resolve, 4000)).then(() =>
      holder.query('COMMIT'),
    );
    const { summary } = await run();
    await released;
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({ mode: 'incremental', updated: 1 });
    expect(tableOf(summary, 'public.items').waitedSeconds).toBeGreaterThan(0.5);
    expect(tableOf(summary, 'public.items').blockers).toEqual([
      expect.objectContaining({ application: 'row editor', relation: 'public.items' }),
    ]);
    await expectInSync();
  });

  it('fails a cursor that went backwards, leaves live as it was, and refreshes fully next run', async () => {
    await ground.source.query(
      `UPDATE sales.items SET name = 'sneaky', updated_at = '2025-12-31 00:00:00+00' WHERE id = 4`,
    );
    const liveBefore = await rowsOf(ground.target, 'public.items', 'id');
    const watermarksBefore = await watermarks();
    const failed = await run();
    expect(failed.summary.status).toBe('FAILED');
    expect(failed.summary.error!.message).toContain(
      'the increment of "public"."items" was not applied: with it, the live table would not match the whole source table in the same snapshot (updated_at: min: 2025-12-31 00:00:00.000000 in Redshift, 2026-01-01 00:04:00.000001 in live).',
    );
    expect(await rowsOf(ground.target, 'public.items', 'id')).toEqual(liveBefore);
    const marked = await watermarks();
    expect(marked[0]).toMatchObject({
      watermark: watermarksBefore[0]!.watermark,
      full_refresh_reason: expect.stringMatching(
        /^the last increment failed the whole-table check/,
      ),
    });
    // The other table of the run was not advanced either: one transaction.
    expect(marked[1]).toEqual(watermarksBefore[1]);

    // A dry run says which mode each table would run in, why full, and that mode's locks, and
    // whom each would wait for: a reader of both tables (older than the grace) holds up only
    // the full run's ACCESS EXCLUSIVE, not the increment's ROW EXCLUSIVE.
    const reader = await ground.targetDb.connect('dry run reader');
    await reader.query('BEGIN');
    await reader.query('SELECT 1 FROM public.items, public.log LIMIT 1');
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const dry = (await run({ dryRun: true })) as unknown as { summary: DryRunSummary };
    await reader.query('COMMIT');
    await reader.end();
    expect(dry.summary.status).toBe('DRY_RUN');
    expect(dry.summary.wouldWait).toBe(true);
    const dryTable = (target: string) => dry.summary.tables.find((t) => t.target === target)!;
    expect(dryTable('public.items')).toMatchObject({
      strategy: 'rename',
      mode: 'full',
      fullReason: expect.stringMatching(/^the last increment failed the whole-table check/),
      locks: [
        { relation: 'public.items', mode: 'AccessExclusiveLock' },
        {
          relation: expect.stringMatching(/^redshift_sync_staging\./),
          mode: 'AccessExclusiveLock',
        },
        { relation: 'each view on it', mode: 'AccessExclusiveLock' },
      ],
    });
    expect(dryTable('public.items').blockers).toEqual([
      expect.objectContaining({ application: 'dry run reader', mode: 'AccessShareLock' }),
    ]);
    expect(dryTable('public.log')).toMatchObject({
      blockers: [],
      strategy: 'rename',
      mode: 'incremental',
      fullReason: null,
      watermark: watermarksBefore[1]!.watermark,
      locks: [
        { relation: 'public.log', mode: 'RowExclusiveLock' },
        {
          relation: expect.stringMatching(/^redshift_sync_staging\./),
          mode: 'AccessExclusiveLock',
        },
      ],
    });
    const dryFull = (await run({ dryRun: true, fullRefresh: true })) as unknown as {
      summary: DryRunSummary;
    };
    expect(dryFull.summary.tables.find((t) => t.target === 'public.log')).toMatchObject({
      mode: 'full',
      fullReason: 'the run was started with fullRefresh',
      locks: expect.arrayContaining([{ relation: 'public.log', mode: 'AccessExclusiveLock' }]),
    });
    expect(await watermarks()).toEqual(marked); // a dry run writes nothing

    const { summary } = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({
      mode: 'full',
      fullRefreshReason: expect.stringMatching(/^the last increment failed the whole-table check/),
    });
    expect(tableOf(summary, 'public.log')).toMatchObject({ mode: 'incremental' });
    await expectInSync();
    expect((await watermarks())[0]).toMatchObject({ full_refresh_reason: null });
  });

  it('takes every incremental table whole when the run asks for a full refresh', async () => {
    const { summary } = await run({ fullRefresh: true });
    expect(summary.error).toBeNull();
    for (const target of ['public.items', 'public.log']) {
      expect(tableOf(summary, target)).toMatchObject({
        mode: 'full',
        fullRefreshReason: 'the run was started with fullRefresh',
      });
    }
    await expectInSync();
  });

  it('refuses a cursor that is not a column of both tables, or of a type that cannot be one', async () => {
    const withCursor = (cursor: string) => ({
      ...CONFIG,
      tables: [{ ...ITEMS, incremental: { cursor, mode: 'merge' } }],
    });
    const badType = await run({}, withCursor('name'));
    expect(badType.summary.status).toBe('FAILED');
    expect(badType.summary.error!.message).toMatch(
      /public\.items: incremental\.cursor name has type text in sales\.items, which cannot be a cursor; use a column of one of integer types .*numeric\/decimal, date, timestamp and timestamptz/,
    );
    const missing = await run({}, withCursor('changed_at'));
    expect(missing.summary.error!.message).toMatch(
      /public\.items: incremental\.cursor changed_at is not a column of the source table sales\.items \(its columns: id, name, price, updated_at\)/,
    );
  });
});
