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

/** Live and staging tables with awkward names; staging's columns in another order, one dropped. */
async function createTables(): Promise<void> {
  await admin.query(`
    DROP SCHEMA IF EXISTS "Sales Dept" CASCADE;
    CREATE SCHEMA "Sales Dept";
    CREATE TABLE ${LIVE} (
      "Order Id" int PRIMARY KEY,
      "Item Name" text NOT NULL,
      qty int,
      doubled int GENERATED ALWAYS AS (qty * 2) STORED
    );
    INSERT INTO ${LIVE} VALUES (1, 'old one', 1), (2, 'old two', 2), (3, 'old three', 3);
    CREATE TABLE ${STAGING} (qty int, junk text, "Item Name" text, "Order Id" int);
    ALTER TABLE ${STAGING} DROP COLUMN junk;
    INSERT INTO ${STAGING} VALUES (10, 'new ten', 10), (20, 'it''s "twenty"', 20);
  `);
}

/** Runs publish_by_truncate in a transaction of its own on `client`, committing on success. */
async function publishByTruncate(client: pg.Client, lockTimeout?: string): Promise<unknown> {
  const sql = new PgSqlClient(client);
  await sql.query('BEGIN');
  try {
    if (lockTimeout) await sql.query(`SET LOCAL lock_timeout = '${lockTimeout}'`);
    const [row] = await sql.query<{ result: unknown }>(
      'SELECT redshift_sync.publish_by_truncate(:live::regclass, :staging::regclass) AS result',
      { live: LIVE, staging: STAGING },
    );
    await sql.query('COMMIT');
    return row!.result;
  } catch (error) {
    await sql.query('ROLLBACK');
    throw error;
  }
}

async function liveRows(client: pg.Client = admin): Promise<unknown[]> {
  const { rows } = await client.query(`SELECT * FROM ${LIVE} ORDER BY "Order Id"`);
  return rows;
}

describe('redshift_sync.publish_by_truncate', () => {
  it("replaces live's rows with staging's and keeps its view, grant, comment and index", async () => {
    await createTables();
    const reader = `${db.name}_reader`;
    await admin.query(`
      CREATE INDEX "by item" ON ${LIVE} ("Item Name");
      CREATE VIEW "Sales Dept"."Big Orders" AS SELECT "Order Id", qty FROM ${LIVE} WHERE qty >= 10;
      COMMENT ON TABLE ${LIVE} IS 'one row per order item';
      COMMENT ON COLUMN ${LIVE}.qty IS 'how many';
      CREATE ROLE ${reader};
      GRANT USAGE ON SCHEMA "Sales Dept" TO ${reader};
      GRANT SELECT ON ${LIVE}, "Sales Dept"."Big Orders" TO ${reader};
    `);
    const identity = `
      SELECT '${LIVE}'::regclass::oid AS live,
             '"Sales Dept"."by item"'::regclass::oid AS index,
             '"Sales Dept"."Big Orders"'::regclass::oid AS view`;
    const before = (await admin.query(identity)).rows[0];

    expect(await publishByTruncate(admin)).toEqual({ rows: 2 });

    expect(await liveRows()).toEqual([
      { 'Order Id': 10, 'Item Name': 'new ten', qty: 10, doubled: 20 },
      { 'Order Id': 20, 'Item Name': 'it\'s "twenty"', qty: 20, doubled: 40 },
    ]);
    expect((await admin.query(identity)).rows[0]).toEqual(before);
    const { rows: comments } = await admin.query(`
      SELECT obj_description('${LIVE}'::regclass, 'pg_class') AS "table",
             col_description('${LIVE}'::regclass, 3) AS qty`);
    expect(comments).toEqual([{ table: 'one row per order item', qty: 'how many' }]);

    // The grant still lets the reader role read the table and the view.
    await admin.query(`SET ROLE ${reader}`);
    try {
      expect(await liveRows()).toHaveLength(2);
      const { rows: view } = await admin.query(
        'SELECT * FROM "Sales Dept"."Big Orders" ORDER BY 1',
      );
      expect(view).toEqual([
        { 'Order Id': 10, qty: 10 },
        { 'Order Id': 20, qty: 20 },
      ]);
    } finally {
      await admin.query('RESET ROLE');
    }
  });

  it('keeps staging values for GENERATED ALWAYS identity columns', async () => {
    await admin.query(`
      DROP SCHEMA IF EXISTS "Sales Dept" CASCADE;
      CREATE SCHEMA "Sales Dept";
      CREATE TABLE ${LIVE} ("Order Id" int GENERATED ALWAYS AS IDENTITY, qty int);
      CREATE TABLE ${STAGING} ("Order Id" int, qty int);
      INSERT INTO ${STAGING} VALUES (41, 1), (42, 2);
    `);
    expect(await publishByTruncate(admin)).toEqual({ rows: 2 });
    expect(await liveRows()).toEqual([
      { 'Order Id': 41, qty: 1 },
      { 'Order Id': 42, qty: 2 },
    ]);
  });

  it("waits for a reader's lock: with a lock_timeout it fails with 55P03 and changes nothing", async () => {
    await createTables();
    const reader = await db.connect('reader');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM ${LIVE}`); // holds AccessShareLock until COMMIT
    try {
      await expect(publishByTruncate(admin, '100ms')).rejects.toMatchObject({
        name: 'DatabaseError',
        sqlState: '55P03',
      });
    } finally {
      await reader.query('COMMIT');
    }
    expect(await liveRows()).toHaveLength(3);
  });

  it('refuses a staging table whose columns differ from live, naming them', async () => {
    await createTables();
    await admin.query(`ALTER TABLE ${STAGING} RENAME COLUMN qty TO "Qty"`);
    const error = await publishByTruncate(admin).catch((e: unknown) => e);
    expect(error).toMatchObject({
      name: 'DatabaseError',
      sqlState: SYNC_SQLSTATE.stagingColumnsDiffer,
    });
    expect((error as Error).message).toContain(
      'the staging table lacks column(s) qty of the live table. Rebuild the staging table',
    );

    await admin.query(`ALTER TABLE ${STAGING} RENAME COLUMN "Qty" TO qty`);
    await admin.query(`ALTER TABLE ${STAGING} ADD COLUMN "Unit Price" numeric`);
    await expect(publishByTruncate(admin)).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.stagingColumnsDiffer,
      message: expect.stringContaining(
        'the staging table has column(s) "Unit Price" that the live table lacks',
      ),
    });
    expect(await liveRows()).toHaveLength(3);
  });

  it('refuses a live table that a foreign key references, suggesting merge', async () => {
    await createTables();
    await admin.query(
      `CREATE TABLE "Sales Dept".shipments (item int REFERENCES ${LIVE} ("Order Id"))`,
    );
    await expect(publishByTruncate(admin)).rejects.toMatchObject({
      sqlState: SYNC_SQLSTATE.strategyNotPossible,
      message: expect.stringMatching(
        /foreign key constraint shipments_item_fkey of table "Sales Dept"\.shipments references it.*Use strategy "merge"/,
      ),
    });
  });
});
