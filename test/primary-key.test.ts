import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { ConfigError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { discoverPrimaryKey, resolveMergeKey } from '../lambdas/core/swap/primary-key';
import type { TableSwap } from '../lambdas/core/swap/types';
import { freshDatabase } from './support/db';

const ITEMS: QualifiedName = { schema: 'Sales Dept', name: 'Order "Items"' };
const NO_KEY: QualifiedName = { schema: 'Sales Dept', name: 'no key' };
const MISSING: QualifiedName = { schema: 'Sales Dept', name: 'missing' };
const STAGING: QualifiedName = { schema: 'Sales Dept', name: 'staging' };

let db: PgSqlClient;

beforeAll(async () => {
  const database = await freshDatabase();
  const client = await database.connect();
  await client.query(`
    CREATE SCHEMA "Sales Dept";
    -- The key's order (Region, Order Id) is not the columns' order; note is only INCLUDEd.
    CREATE TABLE "Sales Dept"."Order ""Items""" (
      dropped int,
      "Order Id" int,
      "Region" text,
      note text,
      PRIMARY KEY ("Region", "Order Id") INCLUDE (note)
    );
    ALTER TABLE "Sales Dept"."Order ""Items""" DROP COLUMN dropped;
    CREATE TABLE "Sales Dept"."no key" (id int UNIQUE, "Region" text);
    CREATE TABLE "Sales Dept".staging (id int PRIMARY KEY, "Region" text);
  `);
  db = new PgSqlClient(client);
});

function merge(live: QualifiedName, primaryKey?: string[]): TableSwap {
  return { live, staging: STAGING, strategy: 'merge', ...(primaryKey ? { primaryKey } : {}) };
}

describe('discoverPrimaryKey', () => {
  it("returns the primary key's columns in key order, without INCLUDE columns", async () => {
    expect(await discoverPrimaryKey(db, ITEMS)).toEqual(['Region', 'Order Id']);
  });

  it('returns null for a table without a primary key (a unique constraint is not one)', async () => {
    expect(await discoverPrimaryKey(db, NO_KEY)).toBeNull();
    expect(await discoverPrimaryKey(db, MISSING)).toBeNull();
  });
});

describe('resolveMergeKey', () => {
  it('uses the configured key, in its order, after checking it against the live table', async () => {
    expect(await resolveMergeKey(db, merge(ITEMS, ['note', 'Order Id']))).toEqual([
      'note',
      'Order Id',
    ]);
    expect(await resolveMergeKey(db, merge(NO_KEY, ['id']))).toEqual(['id']);
  });

  it("falls back to the live table's primary key", async () => {
    expect(await resolveMergeKey(db, merge(ITEMS))).toEqual(['Region', 'Order Id']);
  });

  it('names a configured column the live table lacks, and the table', async () => {
    const error = await resolveMergeKey(db, merge(ITEMS, ['Order Id', 'region'])).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      '"Sales Dept"."Order ""Items""": "primaryKey" column region is not a column of the live table (its columns: "Order Id", "Region", note); fix the name in the config, putting names with capitals or spaces in "double quotes"',
    );
    await expect(resolveMergeKey(db, merge(ITEMS, []))).rejects.toThrowError(
      /"primaryKey" is empty/,
    );
    await expect(resolveMergeKey(db, merge(ITEMS, ['note', 'note']))).rejects.toThrowError(
      /lists column note more than once/,
    );
  });

  it('refuses a table with neither a configured key nor a primary key', async () => {
    const error = await resolveMergeKey(db, merge(NO_KEY)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      '"Sales Dept"."no key": a merge (strategy "merge", or incremental mode "merge") needs a primary key; set "primaryKey" for this table in the config, or add a primary key to the live table',
    );
  });

  it("when live does not exist yet (the swap will rename staging into place), uses the configured key or staging's", async () => {
    expect(await resolveMergeKey(db, merge(MISSING, ['Region']))).toEqual(['Region']);
    expect(await resolveMergeKey(db, merge(MISSING))).toEqual(['id']);
    await expect(resolveMergeKey(db, { ...merge(MISSING), staging: NO_KEY })).rejects.toThrowError(
      /the live table does not exist yet and the staging table "Sales Dept"."no key" has no primary key/,
    );
  });
});
