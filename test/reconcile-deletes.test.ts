/**
 * `redshift_sync.delete_missing_keys` and publish_increment with a key table, on real
 * PostgreSQL as the pipeline's own role: keys matched as merge_rows matches them (numeric by
 * its text form, text under "C"), live's own rows only (a table inheriting from live keeps its
 * rows), deletes before the merge (a key deleted and sent again is updated), NULL keys refused,
 * and a foreign key that still references a deleted row named; the key table takes live's key
 * column types, and is UNLOGGED where staging is.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { createKeyTable } from '../lambdas/core/load/key-table';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import type { TableTransfer } from '../lambdas/core/transfer/types';
import { freshDatabase, type TestDatabase } from './support/db';

let client: pg.Client;
let admin: pg.Client;

beforeAll(async () => {
  const db: TestDatabase = await freshDatabase();
  admin = await db.connect('test setup');
  await admin.query(`GRANT CREATE ON SCHEMA public TO ${db.pipelineLogin.user}`);
  client = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  await installSchema(new PgSqlClient(client));
});

async function reconcile(live: string, keys: string, columns: string[]): Promise<number> {
  const { rows } = await client.query(
    `SELECT redshift_sync.delete_missing_keys($1::regclass, $2::regclass, $3::text[])::int AS deleted`,
    [live, keys, columns],
  );
  return rows[0].deleted;
}

describe('redshift_sync.delete_missing_keys', () => {
  it("deletes live's rows whose key the key table lacks, comparing keys as merge_rows does", async () => {
    await client.query(`
      CREATE TABLE public.accounts (amount numeric, name text COLLATE "C", note text);
      INSERT INTO public.accounts VALUES (1.5, 'a', 'kept'), (1.50, 'a', 'other scale'),
        (2, 'B', 'kept'), (2, 'b', 'gone'), (3, 'c', 'gone');
      CREATE TABLE public.account_keys (amount numeric, name text);
      INSERT INTO public.account_keys VALUES (1.5, 'a'), (2, 'B');
    `);
    // 1.50 is not 1.5 (merge_rows would update it, as it reads differently), 'b' is not 'B'.
    expect(await reconcile('public.accounts', 'public.account_keys', ['amount', 'name'])).toBe(3);
    const { rows } = await client.query(
      `SELECT amount::text, name, note FROM public.accounts ORDER BY amount`,
    );
    expect(rows).toEqual([
      { amount: '1.5', name: 'a', note: 'kept' },
      { amount: '2', name: 'B', note: 'kept' },
    ]);
  });

  it("touches live's own rows only, not those of a table inheriting from it", async () => {
    await client.query(`
      CREATE TABLE public.parent (id int);
      CREATE TABLE public.child () INHERITS (public.parent);
      INSERT INTO public.parent VALUES (1), (2);
      INSERT INTO public.child VALUES (3);
      CREATE TABLE public.parent_keys (id int);
      INSERT INTO public.parent_keys VALUES (1);
    `);
    expect(await reconcile('public.parent', 'public.parent_keys', ['id'])).toBe(1);
    const { rows } = await client.query(`SELECT id FROM public.parent ORDER BY id`);
    expect(rows).toEqual([{ id: 1 }, { id: 3 }]);
  });

  it('refuses NULL keys, and names a foreign key still referencing a deleted row', async () => {
    await client.query(`
      CREATE TABLE public.owners (id int PRIMARY KEY);
      INSERT INTO public.owners VALUES (1), (2);
      CREATE TABLE public.pets (owner int REFERENCES public.owners);
      INSERT INTO public.pets VALUES (2);
      CREATE TABLE public.owner_keys (id int);
      INSERT INTO public.owner_keys VALUES (1), (NULL);
    `);
    await expect(reconcile('public.owners', 'public.owner_keys', ['id'])).rejects.toMatchObject({
      code: 'RS001',
      message: expect.stringContaining(
        'cannot delete the rows gone from the source from public.owners: 1 source row(s) have NULL in key column id',
      ),
    });
    await client.query(`DELETE FROM public.owner_keys WHERE id IS NULL`);
    await expect(reconcile('public.owners', 'public.owner_keys', ['id'])).rejects.toMatchObject({
      code: 'RS001',
      message: expect.stringMatching(/still referenced through foreign key pets_owner_fkey/),
    });
    expect((await client.query(`SELECT id FROM public.owners ORDER BY id`)).rows).toEqual([
      { id: 1 },
      { id: 2 },
    ]);
  });
});

describe('redshift_sync.publish_increment with a key table', () => {
  it('deletes first, so a key deleted and sent again is updated; counts the deletes', async () => {
    await client.query(`
      CREATE TABLE public.items (id int PRIMARY KEY, v text);
      INSERT INTO public.items VALUES (1, 'a'), (2, 'b'), (3, 'c');
      CREATE TABLE public.items_delta (LIKE public.items);
      INSERT INTO public.items_delta VALUES (2, 'b again'), (4, 'd');
      CREATE TABLE public.items_keys (id int);
      INSERT INTO public.items_keys VALUES (2), (3), (4);
    `);
    const { rows } = await client.query(
      `SELECT redshift_sync.publish_increment('public.items', 'public.items_delta', ARRAY['id'], 'merge', 'public.items_keys') AS result`,
    );
    expect(rows[0].result).toEqual({ inserted: 1, updated: 1, deleted: 1 });
    expect((await client.query(`SELECT id, v FROM public.items ORDER BY id`)).rows).toEqual([
      { id: 2, v: 'b again' },
      { id: 3, v: 'c' },
      { id: 4, v: 'd' },
    ]);
  });
});

describe('the key table', () => {
  it("takes the live table's key column types, and is UNLOGGED under a FOR ALL TABLES publication", async () => {
    await client.query(
      `CREATE TABLE public.keyed ("Amount" numeric(12,2), code varchar(8), note text)`,
    );
    const keyTable = { schema: STAGING_SCHEMA, name: 'keyed__0123456789ab_keys' };
    const column = (name: string) => ({
      name,
      selectExpression: `"${name}"`,
      targetType: 'text',
      figures: 'nulls' as const,
    });
    const transfer: TableTransfer = {
      table: {
        source: { schema: 'sales', name: 'keyed' },
        target: { schema: 'public', name: 'keyed' },
        strategy: 'rename',
        allowEmpty: false,
      },
      staging: { schema: STAGING_SCHEMA, name: 'keyed__0123456789ab' },
      columns: [column('Amount'), column('code'), column('note')],
      s3Prefix: 's3://bucket/runs/r/keyed/',
      keys: {
        columns: [column('code'), column('Amount')],
        table: keyTable,
        s3Prefix: 's3://bucket/runs/r/keyed/keys/',
      },
    };
    const shape = async () =>
      (
        await client.query(
          `SELECT c.relpersistence, array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS columns
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
            WHERE c.oid = $1::regclass GROUP BY c.relpersistence`,
          [`${STAGING_SCHEMA}.${keyTable.name}`],
        )
      ).rows[0];
    const db = new PgSqlClient(client);
    await createKeyTable(db, transfer);
    expect(await shape()).toEqual({
      relpersistence: 'p',
      columns: ['code character varying(8)', 'Amount numeric(12,2)'],
    });
    await admin.query('CREATE PUBLICATION everything FOR ALL TABLES');
    try {
      await createKeyTable(db, transfer);
      expect((await shape()).relpersistence).toBe('u');
    } finally {
      await admin.query('DROP PUBLICATION everything');
    }
  });
});
