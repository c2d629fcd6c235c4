/**
 * The live table as Aurora's catalog describes it, and staging tables built from it (or, on a
 * first run, from the type map), on real PostgreSQL.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { ConfigError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import {
  buildCreateStagingStatement,
  createStagingTable,
  dropStaging,
  dropStaleStaging,
} from '../lambdas/core/load/staging';
import { liveRowCount, targetColumns } from '../lambdas/core/load/target';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import type { ColumnTransfer, TableTransfer } from '../lambdas/core/transfer/types';
import { freshDatabase } from './support/db';

let admin: pg.Client;
let sql: PgSqlClient;

const orders: QualifiedName = { schema: 'public', name: 'orders' };
const orderItems: QualifiedName = { schema: 'sales', name: 'Order "Items"' };

function column(name: string, targetType: string): ColumnTransfer {
  return { name, selectExpression: `"${name}"`, targetType, figures: 'nulls' };
}

function transferInto(
  target: QualifiedName,
  stagingName: string,
  columns: ColumnTransfer[],
): TableTransfer {
  return {
    table: { source: target, target, strategy: 'rename', allowEmpty: false },
    staging: { schema: STAGING_SCHEMA, name: stagingName },
    columns,
    s3Prefix: 's3://bucket/run/table/',
  };
}

async function stagingColumns(name: string) {
  const { rows } = await admin.query<{
    name: string;
    type: string;
    not_null: boolean;
    default: string | null;
    generated: string;
  }>(
    `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS not_null,
            pg_get_expr(d.adbin, d.adrelid) AS default, attgenerated AS generated
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE attrelid = format('%I.%I', $1::text, $2::text)::regclass AND attnum > 0 AND NOT attisdropped
     ORDER BY attnum`,
    [STAGING_SCHEMA, name],
  );
  return rows;
}

beforeAll(async () => {
  const db = await freshDatabase();
  admin = await db.connect('test-admin');
  sql = new PgSqlClient(admin);
  await installSchema(sql);
  await admin.query(`
    CREATE TABLE public.orders (
      id integer PRIMARY KEY,
      region text NOT NULL DEFAULT 'eu',
      amount numeric(12,2) CONSTRAINT amount_not_negative CHECK (amount >= 0),
      note character varying(200),
      amount_cents bigint GENERATED ALWAYS AS ((amount * 100)::bigint) STORED
    );
    ALTER TABLE public.orders ALTER COLUMN note SET STORAGE EXTERNAL;
    CREATE STATISTICS orders_region_amount (dependencies) ON region, amount FROM public.orders;
    CREATE INDEX orders_region ON public.orders (region);
    ALTER TABLE public.orders DROP COLUMN IF EXISTS nothing;
    INSERT INTO public.orders (id, region, amount) VALUES (1, 'eu', 1), (2, 'us', 2), (3, 'eu', 3);
    CREATE SCHEMA sales;
    CREATE TABLE sales."Order ""Items""" ("Item Id" bigint, "Price" double precision);
  `);
});

describe('targetColumns', () => {
  it('lists the live columns in order with their full types and which are generated', async () => {
    expect(await targetColumns(sql, orders)).toEqual([
      { name: 'id', type: 'integer', generated: false },
      { name: 'region', type: 'text', generated: false },
      { name: 'amount', type: 'numeric(12,2)', generated: false },
      { name: 'note', type: 'character varying(200)', generated: false },
      { name: 'amount_cents', type: 'bigint', generated: true },
    ]);
    expect(await targetColumns(sql, orderItems)).toEqual([
      { name: 'Item Id', type: 'bigint', generated: false },
      { name: 'Price', type: 'double precision', generated: false },
    ]);
  });

  it('leaves out dropped columns', async () => {
    await admin.query(
      'CREATE TABLE public.shrunk (a int, b int, c int); ALTER TABLE public.shrunk DROP COLUMN b',
    );
    expect(
      (await targetColumns(sql, { schema: 'public', name: 'shrunk' }))?.map((c) => c.name),
    ).toEqual(['a', 'c']);
  });

  it('is null when the live table does not exist yet', async () => {
    expect(await targetColumns(sql, { schema: 'public', name: 'not_there' })).toBeNull();
  });
});

describe('liveRowCount', () => {
  it('counts the live rows exactly, and is null without a live table', async () => {
    expect(await liveRowCount(sql, orders)).toBe(3);
    expect(await liveRowCount(sql, orderItems)).toBe(0);
    expect(await liveRowCount(sql, { schema: 'public', name: 'not_there' })).toBeNull();
  });
});

describe('createStagingTable from a live table', () => {
  const transfer = transferInto(orders, 'orders__run1', [
    column('id', 'integer'),
    column('region', 'text'),
    column('amount', 'numeric(12,2)'),
    column('note', 'character varying(200)'),
  ]);

  beforeAll(async () => {
    await createStagingTable(sql, transfer);
  });

  it('copies the columns with their types, NOT NULLs, defaults and generated expressions', async () => {
    const columns = await stagingColumns('orders__run1');
    expect(columns.map(({ name, type, not_null }) => ({ name, type, not_null }))).toEqual([
      { name: 'id', type: 'integer', not_null: true },
      { name: 'region', type: 'text', not_null: true },
      { name: 'amount', type: 'numeric(12,2)', not_null: false },
      { name: 'note', type: 'character varying(200)', not_null: false },
      { name: 'amount_cents', type: 'bigint', not_null: false },
    ]);
    expect(columns[1]!.default).toBe(`'eu'::text`);
    expect(columns[4]!.generated).toBe('s');
  });

  it('enforces what the live table enforces, as a user inserting rows would see', async () => {
    const table = `${STAGING_SCHEMA}.orders__run1`;
    await admin.query(`INSERT INTO ${table} (id, amount) VALUES (10, 2.5)`);
    const { rows } = await admin.query(`SELECT region, amount_cents FROM ${table} WHERE id = 10`);
    expect(rows).toEqual([{ region: 'eu', amount_cents: '250' }]);
    await expect(
      admin.query(`INSERT INTO ${table} (id, region) VALUES (11, NULL)`),
    ).rejects.toMatchObject({ code: '23502' });
    await expect(
      admin.query(`INSERT INTO ${table} (id, amount) VALUES (12, -1)`),
    ).rejects.toMatchObject({ code: '23514', constraint: 'amount_not_negative' });
  });

  it('keeps storage settings and extended statistics but builds no index (prepareStaging does, after the load)', async () => {
    const { rows } = await admin.query<{
      indexes: number;
      statistics: number;
      note_storage: string;
    }>(
      `SELECT (SELECT count(*)::int FROM pg_index WHERE indrelid = $1::regclass) AS indexes,
              (SELECT count(*)::int FROM pg_statistic_ext WHERE stxrelid = $1::regclass) AS statistics,
              (SELECT attstorage FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'note') AS note_storage`,
      [`${STAGING_SCHEMA}.orders__run1`],
    );
    expect(rows[0]).toEqual({ indexes: 0, statistics: 1, note_storage: 'e' });
  });

  it('replaces a leftover of the same name, so a retried step starts empty', async () => {
    await admin.query(`INSERT INTO ${STAGING_SCHEMA}.orders__run1 (id) VALUES (99)`);
    await createStagingTable(sql, transfer);
    const { rows } = await admin.query(
      `SELECT count(*)::int AS n FROM ${STAGING_SCHEMA}.orders__run1`,
    );
    expect(rows[0].n).toBe(0);
  });

  it('copies a live table whose names need quoting', async () => {
    await createStagingTable(
      sql,
      transferInto(orderItems, 'order_items__run1', [column('Item Id', 'bigint')]),
    );
    expect((await stagingColumns('order_items__run1')).map((c) => c.name)).toEqual([
      'Item Id',
      'Price',
    ]);
  });
});

describe('createStagingTable on a first run', () => {
  const target: QualifiedName = { schema: 'public', name: 'new_table' };

  it('builds staging from the mapped types, keeping their modifiers', async () => {
    await createStagingTable(
      sql,
      transferInto(target, 'new_table__run1', [
        column('id', 'bigint'),
        column('Amount', 'numeric(38,10)'),
        column('label', 'character varying(256)'),
        column('at', 'timestamp(3) with time zone'),
        column('tags', 'text[]'),
        column('flag', '"char"'),
      ]),
    );
    expect(
      (await stagingColumns('new_table__run1')).map(({ name, type, not_null }) => ({
        name,
        type,
        not_null,
      })),
    ).toEqual([
      { name: 'id', type: 'bigint', not_null: false },
      { name: 'Amount', type: 'numeric(38,10)', not_null: false },
      { name: 'label', type: 'character varying(256)', not_null: false },
      { name: 'at', type: 'timestamp(3) with time zone', not_null: false },
      { name: 'tags', type: 'text[]', not_null: false },
      { name: 'flag', type: '"char"', not_null: false },
    ]);
  });

  it('refuses a type the database does not know, naming it and its column', async () => {
    const error = await createStagingTable(
      sql,
      transferInto(target, 'new_table__run2', [
        column('id', 'bigint'),
        column('shape', 'geometry'),
      ]),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/no type "geometry" \(column "shape"\)/);
    expect(
      await targetColumns(sql, { schema: STAGING_SCHEMA, name: 'new_table__run2' }),
    ).toBeNull();
  });

  it('never lets a type text carry more SQL into the DDL', async () => {
    const error = await createStagingTable(
      sql,
      transferInto(target, 'new_table__run3', [
        column('id', 'integer); DROP TABLE public.orders; --'),
      ]),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(/is not a type name/);
    expect(await liveRowCount(sql, orders)).toBe(3);
  });
});

describe('buildCreateStagingStatement', () => {
  it('leaves out INCLUDING COMPRESSION before PostgreSQL 14, which does not know it', () => {
    const staging = { schema: STAGING_SCHEMA, name: 's' };
    expect(buildCreateStagingStatement(staging, { live: orders, serverVersion: 130011 })).toBe(
      `CREATE TABLE "redshift_sync_staging"."s" (LIKE "public"."orders" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING STATISTICS)`,
    );
    expect(buildCreateStagingStatement(staging, { live: orders, serverVersion: 170004 })).toContain(
      'INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS',
    );
  });
});

describe('dropping staging tables', () => {
  it('drops what killed runs left in the staging schema, keeping the ones named and every other schema', async () => {
    await admin.query(`
      CREATE TABLE ${STAGING_SCHEMA}.stale_a (x int);
      CREATE TABLE ${STAGING_SCHEMA}."Stale B" (x int);
      CREATE TABLE ${STAGING_SCHEMA}.current (x int);
      CREATE TABLE public.not_staging (x int);
    `);
    const keep = [
      { schema: STAGING_SCHEMA, name: 'current' },
      { schema: STAGING_SCHEMA, name: 'orders__run1' },
      { schema: STAGING_SCHEMA, name: 'order_items__run1' },
      { schema: STAGING_SCHEMA, name: 'new_table__run1' },
    ];
    const dropped = await dropStaleStaging(sql, keep);
    expect(dropped).toEqual([
      { schema: STAGING_SCHEMA, name: 'Stale B' },
      { schema: STAGING_SCHEMA, name: 'stale_a' },
    ]);
    const { rows } = await admin.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r' ORDER BY 1`,
      [STAGING_SCHEMA],
    );
    expect(rows.map((row) => row.name)).toEqual(keep.map((table) => table.name).sort());
    expect(await targetColumns(sql, { schema: 'public', name: 'not_staging' })).not.toBeNull();
    expect(await dropStaleStaging(sql, keep)).toEqual([]);
  });

  it('drops one staging table, and refuses a table outside the staging schema', async () => {
    await dropStaging(sql, { schema: STAGING_SCHEMA, name: 'current' });
    expect(await targetColumns(sql, { schema: STAGING_SCHEMA, name: 'current' })).toBeNull();
    await expect(dropStaging(sql, orders)).rejects.toThrowError(
      /must be in schema redshift_sync_staging/,
    );
    expect(await liveRowCount(sql, orders)).toBe(3);
  });
});
