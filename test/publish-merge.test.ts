import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { installSchema } from '../lambdas/core/schema/install';
import { SYNC_SQLSTATE } from '../lambdas/core/schema/sqlstates';
import { freshDatabase, type TestDatabase } from './support/db';

const LIVE = '"Sales Dept"."Order ""Items"""';
const STAGING = '"Sales Dept"."Order ""Items"" staging"';

let db: TestDatabase;
let admin: pg.Client;

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('admin');
  await installSchema(new PgSqlClient(admin));
});

/**
 * Live and staging with awkward names, staging's columns in another order with one dropped.
 * Order 1 is unchanged, 2 has a new quantity, 3 a new price scale (1.5 -> 1.50, equal as
 * numbers but not to the eye), 4 is gone from staging and 5 is new.
 */
async function createTables(): Promise<void> {
  await admin.query(`
    DROP SCHEMA IF EXISTS "Sales Dept" CASCADE;
    CREATE SCHEMA "Sales Dept";
    CREATE TABLE ${LIVE} (
      "Order Id" int PRIMARY KEY,
      "Item Name" text,
      qty int,
      price numeric,
      doubled int GENERATED ALWAYS AS (qty * 2) STORED
    );
    INSERT INTO ${LIVE} VALUES
      (1, 'one', 1, 1), (2, 'two', 2, 2), (3, 'three', 3, 1.5), (4, 'four', 4, 4);
    CREATE TABLE ${STAGING} (price numeric, junk text, qty int, "Item Name" text, "Order Id" int);
    ALTER TABLE ${STAGING} DROP COLUMN junk;
    INSERT INTO ${STAGING} VALUES
      (1, 1, 'one', 1), (2, 20, 'two', 2), (1.50, 3, 'three', 3), (5, 5, 'it''s "five"', 5);
  `);
}

/** Runs publish_by_merge in a transaction of its own on `client`, committing on success. */
async function publishByMerge(keys: readonly string[], client = admin): Promise<unknown> {
  const sql = new PgSqlClient(client);
  await sql.query('BEGIN');
  try {
    const result = await callMerge(sql, keys);
    await sql.query('COMMIT');
    return result;
  } catch (error) {
    await sql.query('ROLLBACK');
    throw error;
  }
}

async function callMerge(sql: PgSqlClient, keys: readonly string[]): Promise<unknown> {
  const [row] = await sql.query<{ result: unknown }>(
    `SELECT redshift_sync.publish_by_merge(
       :live::regclass, :staging::regclass, ARRAY(SELECT jsonb_array_elements_text(:keys::jsonb))
     ) AS result`,
    { live: LIVE, staging: STAGING, keys: JSON.stringify(keys) },
  );
  return row!.result;
}

async function liveRows(client: pg.Client = admin): Promise<Record<string, unknown>[]> {
  const { rows } = await client.query(`SELECT * FROM ${LIVE} ORDER BY "Order Id"`);
  return rows;
}

/** Each live row's xmin (the transaction that last wrote it), by key. */
async function rowVersions(): Promise<Record<number, string>> {
  const { rows } = await admin.query<{ id: number; xmin: string }>(
    `SELECT "Order Id" AS id, xmin::text AS xmin FROM ${LIVE}`,
  );
  return Object.fromEntries(rows.map((row) => [row.id, row.xmin]));
}

describe('redshift_sync.publish_by_merge', () => {
  it('inserts new keys, updates changed rows, deletes vanished ones and leaves the rest alone', async () => {
    await createTables();
    const before = await rowVersions();

    expect(await publishByMerge(['Order Id'])).toEqual({ inserted: 1, updated: 2, deleted: 1 });

    expect(await liveRows()).toEqual([
      { 'Order Id': 1, 'Item Name': 'one', qty: 1, price: '1', doubled: 2 },
      { 'Order Id': 2, 'Item Name': 'two', qty: 20, price: '2', doubled: 40 },
      { 'Order Id': 3, 'Item Name': 'three', qty: 3, price: '1.50', doubled: 6 },
      { 'Order Id': 5, 'Item Name': 'it\'s "five"', qty: 5, price: '5', doubled: 10 },
    ]);
    const after = await rowVersions();
    expect(after[1]).toBe(before[1]); // unchanged: not rewritten
    expect(after[2]).not.toBe(before[2]);
    expect(after[3]).not.toBe(before[3]);

    // Publishing the same staging again changes nothing.
    expect(await publishByMerge(['Order Id'])).toEqual({ inserted: 0, updated: 0, deleted: 0 });
    expect(await rowVersions()).toEqual(after);
  });

  it('compares json, xml and point columns, which have no equality operator, by their text', async () => {
    await admin.query(`
      DROP SCHEMA IF EXISTS "Sales Dept" CASCADE;
      CREATE SCHEMA "Sales Dept";
      CREATE TABLE ${LIVE} ("Order Id" int, doc json, place point, note xml);
      INSERT INTO ${LIVE} VALUES
        (1, '{"a": 1}', '(1,1)', '<n/>'),
        (2, '{"a": 2}', '(2,2)', '<n/>'),
        (3, '{"a": 3}', '(3,3)', '<n/>'),
        (4, '{"a": 4}', '(4,4)', '<n/>');
      CREATE TABLE ${STAGING} (LIKE ${LIVE});
      INSERT INTO ${STAGING} VALUES
        (1, '{"a": 1}', '(1,1)', '<n/>'),
        (2, '{"a": 2, "b": null}', '(2,2)', '<n/>'),
        (3, '{"a": 3}', '(3,3.5)', '<n/>'),
        (4, '{"a": 4}', '(4,4)', '<n>new</n>');
    `);
    const before = await rowVersions();

    expect(await publishByMerge(['Order Id'])).toEqual({ inserted: 0, updated: 3, deleted: 0 });

    const { rows } = await admin.query(
      `SELECT "Order Id" AS id, doc::text, place::text, note::text FROM ${LIVE} ORDER BY 1`,
    );
    expect(rows).toEqual([
      { id: 1, doc: '{"a": 1}', place: '(1,1)', note: '<n/>' },
      { id: 2, doc: '{"a": 2, "b": null}', place: '(2,2)', note: '<n/>' },
      { id: 3, doc: '{"a": 3}', place: '(3,3.5)', note: '<n/>' },
      { id: 4, doc: '{"a": 4}', place: '(4,4)', note: '<n>new</n>' },
    ]);
    expect((await rowVersions())[1]).toBe(before[1]);
  });

  it('refuses NULL key values, naming the column, and changes nothing', async () => {
    await createTables();
    await admin.query(`INSERT INTO ${STAGING} ("Order Id", qty) VALUES (NULL, 6), (NULL, 7)`);
    const error = await publishByMerge(['Order Id']).catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'DatabaseError',
      sqlState: SYNC_SQLSTATE.badStagingData,
    });
    expect((error as Error).message).toBe(
      `cannot merge ${STAGING} into ${LIVE}: 2 row(s) of the staging table have NULL in key column "Order Id". Key columns must never be NULL: fix the source data, or set "primaryKey" for this table in the config to columns that are never NULL.`,
    );
    expect(await liveRows()).toHaveLength(4);
  });

  it('refuses duplicate keys, naming the key columns and one duplicate value', async () => {
    await createTables();
    await admin.query(`
      ALTER TABLE ${STAGING} ADD COLUMN "Region" text;
      ALTER TABLE ${LIVE} ADD COLUMN "Region" text;
      UPDATE ${STAGING} SET "Region" = 'eu';
      INSERT INTO ${STAGING} ("Order Id", "Region", qty) VALUES (2, 'eu', 0), (2, 'us', 0);
    `);
    const error = await publishByMerge(['Order Id', 'Region']).catch((e: unknown) => e);
    expect(error).toMatchObject({ sqlState: SYNC_SQLSTATE.badStagingData });
    expect((error as Error).message).toBe(
      `cannot merge ${STAGING} into ${LIVE}: 1 key value(s) occur more than once in the staging table, for example ("Order Id", "Region")=(2, eu) in 2 rows. The key must identify one row: fix the source data, or set "primaryKey" for this table in the config to columns that do.`,
    );
    expect(await liveRows()).toHaveLength(4);
  });

  it('refuses key columns missing from live or staging, and columns staging lacks', async () => {
    await createTables();
    await expect(publishByMerge(['order id'])).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.invalidArguments,
      message: expect.stringContaining(
        'key column "order id" is not a column of the live table. Set "primaryKey"',
      ),
    });
    await admin.query(`ALTER TABLE ${STAGING} DROP COLUMN "Item Name"`);
    await expect(publishByMerge(['Order Id'])).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.stagingColumnsDiffer,
      message: expect.stringContaining('the staging table lacks column(s) "Item Name"'),
    });
    await admin.query(`ALTER TABLE ${STAGING} RENAME COLUMN "Order Id" TO id`);
    await expect(publishByMerge(['Order Id'])).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.stagingColumnsDiffer,
      message: expect.stringContaining('lacks column(s) "Order Id", "Item Name"'),
    });
  });

  it('does not wait for readers, takes only ROW EXCLUSIVE, and readers see the old rows until commit', async () => {
    await createTables();
    const reader = await db.connect('reader');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${LIVE}`); // holds AccessShareLock until COMMIT
    const publisher = await db.connect('publisher');
    const sql = new PgSqlClient(publisher);
    const [{ pid }] = (await publisher.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))
      .rows as [{ pid: number }];
    try {
      await sql.query('BEGIN');
      await sql.query("SET LOCAL lock_timeout = '100ms'");
      expect(await callMerge(sql, ['Order Id'])).toEqual({ inserted: 1, updated: 2, deleted: 1 });

      const { rows: locks } = await reader.query<{ mode: string }>(
        `SELECT mode::text FROM pg_locks
          WHERE locktype = 'relation' AND relation = '${LIVE}'::regclass AND pid = $1`,
        [pid],
      );
      // The INSERT's NOT EXISTS reads live (ACCESS SHARE); nothing is stronger than ROW EXCLUSIVE.
      expect(locks.map((lock) => lock.mode).sort()).toEqual([
        'AccessShareLock',
        'RowExclusiveLock',
      ]);
      expect((await liveRows(reader)).map((row) => row['Order Id'])).toEqual([1, 2, 3, 4]);

      await sql.query('COMMIT');
      expect((await liveRows(reader)).map((row) => row['Order Id'])).toEqual([1, 2, 3, 5]);
    } finally {
      await publisher.query('ROLLBACK'); // a no-op after COMMIT; ends the transaction on failure
      await reader.query('COMMIT');
    }
  });

  it('refuses a non-key GENERATED ALWAYS identity column, which UPDATE cannot set', async () => {
    await admin.query(`
      DROP SCHEMA IF EXISTS "Sales Dept" CASCADE;
      CREATE SCHEMA "Sales Dept";
      CREATE TABLE ${LIVE} ("Order Id" int, serial int GENERATED ALWAYS AS IDENTITY);
      CREATE TABLE ${STAGING} ("Order Id" int, serial int);
    `);
    await expect(publishByMerge(['Order Id'])).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.strategyNotPossible,
      message: expect.stringContaining(
        'column serial is GENERATED ALWAYS AS IDENTITY, which UPDATE cannot set',
      ),
    });
  });
});
