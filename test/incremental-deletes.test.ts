/**
 * Rows deleted from the source, through the whole local pipeline (the synthesized state
 * machine, a PostgreSQL source standing in for Redshift with UNLOAD emulated, a PostgreSQL
 * target for Aurora, the pipeline as its non-superuser role): with `deletes: "ignore"` the
 * whole-table proof fails the run and the next run is full; with `deletes: "reconcile"` the
 * source's keys are unloaded with the delta and the rows gone from the source are deleted from
 * live in the swap, counted, and the proof passes: in mode merge (the live primary key), in
 * mode append (a configured composite key), with a key deleted and inserted again; and a
 * reconcile without a key is refused by name before anything is unloaded.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { rowsOf, runLocally, tableOf } from './support/local-pipeline';

let ground: DatabasesAndBucket;

const ITEMS = {
  source: 'sales.items',
  target: 'public.items',
  incremental: { cursor: 'updated_at', mode: 'merge', deletes: 'reconcile' },
};
/** No primary key in live: the key is configured, and is of text columns (compared under "C"). */
const EVENTS = {
  source: 'sales.events',
  target: 'public.events',
  primaryKey: ['code', 'region'],
  incremental: { cursor: 'seq', mode: 'append', deletes: 'reconcile' },
};
const NOTES = {
  source: 'sales.notes',
  target: 'public.notes',
  incremental: { cursor: 'seq', mode: 'merge' },
};
const LOCKS = { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' };
const RECONCILED = { tables: [ITEMS, EVENTS], locks: LOCKS };

beforeAll(async () => {
  ground = await databasesAndBucket('incremental-deletes-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.items (id bigint PRIMARY KEY, name text, updated_at timestamptz);
    INSERT INTO sales.items
      SELECT g, 'item ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
      FROM generate_series(1, 6) g;
    CREATE TABLE sales.events (code text, region text, seq bigint, note text);
    INSERT INTO sales.events VALUES ('a', 'eu', 1, 'one'), ('a', 'us', 2, 'two'),
      ('b', 'eu', 3, NULL), ('B', 'eu', 4, 'capital');
    CREATE TABLE sales.notes (id bigint PRIMARY KEY, body text, seq bigint);
    INSERT INTO sales.notes SELECT g, 'note ' || g, g FROM generate_series(1, 3) g;
  `);
  await ground.target.query(`
    CREATE TABLE public.items (id bigint PRIMARY KEY, name text, updated_at timestamptz);
    CREATE TABLE public.events (code text, region text, seq bigint, note text);
    CREATE TABLE public.notes (id bigint PRIMARY KEY, body text, seq bigint);
    ALTER TABLE public.items OWNER TO ${ground.owner};
    ALTER TABLE public.events OWNER TO ${ground.owner};
    ALTER TABLE public.notes OWNER TO ${ground.owner};
  `);
});

function run(config: unknown = RECONCILED): Promise<RunSummary> {
  return runLocally({ ...ground.runOn, config });
}

async function expectInSync(): Promise<void> {
  expect(await rowsOf(ground.target, 'public.items', 'id')).toEqual(
    await rowsOf(ground.source, 'sales.items', 'id'),
  );
  const byKey = 'code COLLATE "C", region COLLATE "C", seq';
  expect(await rowsOf(ground.target, 'public.events', byKey)).toEqual(
    await rowsOf(ground.source, 'sales.events', byKey),
  );
}

/** Each row's version, by key: a row written again (even unchanged) gets a new xmin and ctid. */
async function versions(relation: string, key: string): Promise<Record<string, string>> {
  const { rows } = await ground.target.query(
    `SELECT (${key})::text AS key, xmin::text || ' ' || ctid::text AS version FROM ${relation}`,
  );
  return Object.fromEntries(
    rows.map((row: { key: string; version: string }) => [row.key, row.version]),
  );
}

async function stagingTables(): Promise<string[]> {
  const { rows } = await ground.target.query(
    `SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r'`,
    [STAGING_SCHEMA],
  );
  return rows.map((row: { name: string }) => row.name);
}

describe('incremental deletes "reconcile"', () => {
  it('takes the tables whole on their first run', async () => {
    const summary = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({ mode: 'full', rows: 6 });
    expect(tableOf(summary, 'public.events')).toMatchObject({ mode: 'full', rows: 4 });
    await expectInSync();
  });

  it('deletes the rows gone from the source, counts them, writes nothing else, and the proof passes', async () => {
    await ground.source.query(`
      DELETE FROM sales.items WHERE id IN (2, 3);
      -- deleted and inserted again: the key stays, its row is updated, not deleted
      DELETE FROM sales.items WHERE id = 5;
      INSERT INTO sales.items VALUES (5, 'item 5 again', '2026-02-01 00:00:00+00');
      DELETE FROM sales.events WHERE code = 'b';
      INSERT INTO sales.events VALUES ('c', 'eu', 5, 'five'), ('c', 'us', 6, 'six');
    `);
    const items = await versions('public.items', 'id');
    const events = await versions('public.events', 'code, region');
    const summary = await run();
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.items')).toMatchObject({
      mode: 'incremental',
      inserted: 0,
      updated: 1,
      deleted: 2,
    });
    // 'b' only: 'B' differs from it under the "C" comparison, and stays.
    expect(tableOf(summary, 'public.events')).toMatchObject({
      mode: 'incremental',
      rows: 2,
      inserted: 2,
      updated: 0,
      deleted: 1,
    });
    await expectInSync();
    const itemsAfter = await versions('public.items', 'id');
    for (const id of ['1', '4', '6']) expect(itemsAfter[id]).toBe(items[id]);
    expect(itemsAfter['5']).not.toBe(items['5']);
    const eventsAfter = await versions('public.events', 'code, region');
    for (const key of ['(a,eu)', '(a,us)', '(B,eu)']) expect(eventsAfter[key]).toBe(events[key]);
    const recorded = await ground.target.query(
      `SELECT target_table, rows_inserted::int, rows_updated::int, rows_deleted::int
         FROM redshift_sync.runs WHERE run_id = $1 ORDER BY 1`,
      [summary.runId],
    );
    expect(recorded.rows).toEqual([
      { target_table: 'events', rows_inserted: 2, rows_updated: 0, rows_deleted: 1 },
      { target_table: 'items', rows_inserted: 0, rows_updated: 1, rows_deleted: 2 },
    ]);
    // The key tables went with staging, in the swap.
    expect(await stagingTables()).toEqual([]);
  });

  it('deletes nothing and writes nothing when nothing changed', async () => {
    const before = {
      items: await versions('public.items', 'id'),
      events: await versions('public.events', 'code, region'),
    };
    const summary = await run();
    expect(summary.error).toBeNull();
    for (const name of ['public.items', 'public.events']) {
      expect(tableOf(summary, name)).toMatchObject({
        mode: 'incremental',
        inserted: 0,
        deleted: 0,
      });
    }
    expect({
      items: await versions('public.items', 'id'),
      events: await versions('public.events', 'code, region'),
    }).toEqual(before);
  });

  it('refuses, by name, a reconcile with neither a configured key nor a live primary key', async () => {
    const before = await rowsOf(ground.target, 'public.events', 'seq');
    const { primaryKey: _, ...withoutKey } = EVENTS;
    const summary = await run({ tables: [withoutKey], locks: LOCKS });
    expect(summary.status).toBe('FAILED');
    expect(summary.error!.message).toMatch(
      /^public\.events: incremental deletes "reconcile" needs a key to tell which rows the source deleted, and public\.events has no primary key \(or does not exist yet\); set "primaryKey" for this table in the config, add a primary key to the live table, or set "deletes": "ignore"\./,
    );
    expect(await rowsOf(ground.target, 'public.events', 'seq')).toEqual(before);
  });
});

describe('incremental deletes "ignore"', () => {
  it('fails the whole-table proof when the source deleted a row, and takes the table whole next run', async () => {
    const config = { tables: [NOTES], locks: LOCKS };
    expect((await run(config)).error).toBeNull();
    await ground.source.query(`DELETE FROM sales.notes WHERE id = 2`);
    const failed = await run(config);
    expect(failed.status).toBe('FAILED');
    expect(failed.error!.message).toContain('rows: 2 in Redshift, 3 in live');
    expect(await rowsOf(ground.target, 'public.notes', 'id')).toHaveLength(3);
    const summary = await run(config);
    expect(summary.error).toBeNull();
    expect(tableOf(summary, 'public.notes')).toMatchObject({
      mode: 'full',
      fullRefreshReason: expect.stringMatching(/^the last increment failed the whole-table check/),
    });
    expect(await rowsOf(ground.target, 'public.notes', 'id')).toEqual(
      await rowsOf(ground.source, 'sales.notes', 'id'),
    );
  });
});
