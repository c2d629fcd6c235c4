/**
 * The `merge` and `truncate` strategies end with live's own rows exactly equal to staging's, or
 * fail naming why: driven through the swap statement (attemptSwap) as the pipeline's
 * non-superuser login, on tables owned by a user role the pipeline is a member of.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { DatabaseError, PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { installSchema } from '../lambdas/core/schema/install';
import { SYNC_SQLSTATE } from '../lambdas/core/schema/sqlstates';
import { attemptSwap } from '../lambdas/core/swap/engine';
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
  admin = await db.connect('admin');
  await admin.query(`CREATE ROLE ${roles.owner}`);
  await admin.query(`GRANT ${roles.owner} TO "${db.pipelineLogin.user}"`);
  await admin.query(`CREATE SCHEMA shop AUTHORIZATION ${roles.owner}`);
  pipeline = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sql = new PgSqlClient(pipeline);
  await installSchema(sql);
});

/**
 * A live table `shop.<name>` created by `ddl` (its name as %s), owned by the user role and
 * filled by `liveRows`; a staging table beside it filled by `stagingRows`; and `expected`, a
 * copy of staging kept to compare live with after the swap drops staging.
 */
async function setUp(ddl: string, liveRows: string, stagingRows: string) {
  const name = `t${++tableCount}`;
  const live: QualifiedName = { schema: 'shop', name };
  await admin.query(ddl.replaceAll('%s', `shop.${name}`));
  await admin.query(`ALTER TABLE shop.${name} OWNER TO ${roles.owner}`);
  if (liveRows) await admin.query(`INSERT INTO shop.${name} ${liveRows}`);
  const staging = await createStaging(pipeline, live, `${name}_staging`, stagingRows);
  const stagingSql = `redshift_sync_staging.${name}_staging`;
  await admin.query(`CREATE TABLE public.${name}_expected AS SELECT * FROM ${stagingSql}`);
  return {
    live,
    staging,
    quoted: `shop.${name}`,
    swap: (strategy: SwapStrategy, primaryKey?: string[]) =>
      attemptSwap(
        sql,
        buildSwapPlan([{ live, staging, strategy, primaryKey }], { runId: `run-${name}` }),
      ),
    /**
     * Rows (as text) of live's own that staging lacked, and of staging that live lacks. A
     * partitioned table has no rows of its own (FROM ONLY finds none): pass `from` for it.
     */
    difference: async (from = `ONLY shop.${name}`) => {
      const { rows } = await admin.query<{ extra: string[]; missing: string[] }>(`
        SELECT ARRAY(SELECT l::text FROM ${from} l
                     EXCEPT ALL SELECT e::text FROM public.${name}_expected e) AS extra,
               ARRAY(SELECT e::text FROM public.${name}_expected e
                     EXCEPT ALL SELECT l::text FROM ${from} l) AS missing`);
      return rows[0];
    },
    rows: async (from = `shop.${name}`) =>
      (await admin.query(`SELECT * FROM ${from} ORDER BY 1, 2`)).rows,
  };
}

const EQUAL = { extra: [], missing: [] };

async function failure(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

describe('merge', () => {
  it('refuses values of a non-deferrable unique column swapped between rows, naming the index, the value and the fix', async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int PRIMARY KEY, email text UNIQUE, note text)',
      `VALUES (1, 'a@x', 'one'), (2, 'b@x', 'two'), (3, 'c@x', 'three')`,
      `VALUES (1, 'b@x', 'one'), (2, 'a@x', 'two'), (3, 'c@x', 'three!')`,
    );
    const before = await t.rows();
    const error = await failure(t.swap('merge', ['id']));
    expect(error).toBeInstanceOf(PreflightError);
    expect((error.cause as DatabaseError).sqlState).toBe(SYNC_SQLSTATE.strategyNotPossible);
    expect(error.message).toMatch(
      new RegExp(
        `the new data moves values of unique constraint ${t.live.name}_email_key \\(email\\) from one row to another \\(Key \\(email\\)=\\([ab]@x\\) already exists\\.\\)`,
      ),
    );
    expect(error.message).toContain(
      `Make it a DEFERRABLE unique constraint (ALTER TABLE ${t.quoted} DROP CONSTRAINT ${t.live.name}_email_key, ADD CONSTRAINT ${t.live.name}_email_key UNIQUE (email) DEFERRABLE), or use strategy "truncate" or "rename"`,
    );
    expect(await t.rows()).toEqual(before);
  });

  it('names a plain unique index (on an expression) the same way, with DROP INDEX as the fix', async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int PRIMARY KEY, email text); CREATE UNIQUE INDEX email_ci ON %s (lower(email))',
      `VALUES (1, 'A@x'), (2, 'B@x')`,
      `VALUES (1, 'b@x'), (2, 'a@x')`,
    );
    const error = await failure(t.swap('merge', ['id']));
    expect(error).toBeInstanceOf(PreflightError);
    expect(error.message).toContain(
      'moves values of unique index email_ci (lower(email)) from one row to another',
    );
    expect(error.message).toContain('DROP INDEX shop.email_ci; ALTER TABLE');
  });

  it('publishes values swapped between rows when the unique constraint is DEFERRABLE, also INITIALLY DEFERRED', async () => {
    for (const deferral of ['DEFERRABLE', 'DEFERRABLE INITIALLY DEFERRED']) {
      const t = await setUp(
        `CREATE TABLE %s (id int PRIMARY KEY, email text UNIQUE ${deferral})`,
        `VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x'), (4, 'd@x')`,
        `VALUES (1, 'b@x'), (2, 'c@x'), (3, 'a@x'), (5, 'd@x')`,
      );
      expect(await t.swap('merge', ['id'])).toMatchObject({ status: 'swapped' });
      expect(await t.difference()).toEqual(EQUAL);
    }
  });

  it('names a unique value staging holds twice, also under an INITIALLY DEFERRED constraint checked only at commit', async () => {
    for (const deferral of ['', 'DEFERRABLE INITIALLY DEFERRED']) {
      const t = await setUp(
        `CREATE TABLE %s (id int PRIMARY KEY, email text UNIQUE ${deferral})`,
        `VALUES (1, 'a@x'), (2, 'b@x')`,
        `VALUES (1, 'a@x'), (2, 'b@x'), (3, 'a@x')`,
      );
      const error = await failure(t.swap('merge', ['id']));
      expect(error).toBeInstanceOf(DatabaseError);
      expect((error as DatabaseError).sqlState).toBe(SYNC_SQLSTATE.badStagingData);
      expect(error.message).toContain(
        `the staging table holds (email)=(a@x) in 2 rows, which unique index ${t.live.name}_email_key of the live table allows once. Fix the source data.`,
      );
      expect(await t.rows()).toEqual([
        { id: 1, email: 'a@x' },
        { id: 2, email: 'b@x' },
      ]);
    }
  });

  it('names NULLs staging holds twice under a NULLS NOT DISTINCT unique constraint (PostgreSQL 15+)', async () => {
    if (db.major < 15) return; // NULLS NOT DISTINCT is new in PostgreSQL 15
    const t = await setUp(
      'CREATE TABLE %s (id int PRIMARY KEY, email text UNIQUE NULLS NOT DISTINCT)',
      `VALUES (1, 'a@x')`,
      `VALUES (1, NULL), (2, NULL)`,
    );
    const error = await failure(t.swap('merge', ['id']));
    expect((error as DatabaseError).sqlState).toBe(SYNC_SQLSTATE.badStagingData);
    expect(error.message).toContain('the staging table holds (email)=(NULL) in 2 rows');
  });

  it('refuses keys that occur more than once in live, naming one, and changes nothing', async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int, v text)',
      `VALUES (1, 'a'), (2, 'b'), (2, 'b'), (3, 'c')`,
      `VALUES (1, 'a'), (2, 'B'), (3, 'c')`,
    );
    const error = await failure(t.swap('merge', ['id']));
    expect(error).toBeInstanceOf(PreflightError);
    expect(error.message).toContain(
      `cannot merge redshift_sync_staging.${t.staging.name} into ${t.quoted}: 1 key value(s) occur more than once in the live table, for example (id)=(2) in 2 rows`,
    );
    expect(error.message).toContain('add a primary key or unique constraint on (id)');
    expect(await t.rows()).toHaveLength(4);
  });

  it('publishes NULLs appearing and disappearing in value columns of every kind, and drops live rows with a NULL key', async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int, n int, s text, d numeric, f float8, j json, b jsonb, i interval, a int[])',
      `VALUES (1, 1, 'x', 1.5, 0.5, '{}', '{}', '1 day', '{1}'),
              (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              (3, NULL, 'x', NULL, 1, NULL, '[]', NULL, '{NULL}'),
              (NULL, 9, 'no key', NULL, NULL, NULL, NULL, NULL, NULL)`,
      `VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              (2, 2, '', 0, -0.0, 'null', 'null', '0', '{}'),
              (3, NULL, 'x', NULL, 1, NULL, '[]', NULL, '{NULL}')`,
    );
    expect(await t.swap('merge', ['id'])).toMatchObject({
      status: 'swapped',
      result: { tables: [{ result: { inserted: 0, updated: 2, deleted: 1 } }] },
    });
    expect(await t.difference()).toEqual(EQUAL);
  });

  it("publishes into an inheritance parent's own rows and leaves the child's alone", async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int PRIMARY KEY, v text)',
      `VALUES (1, 'a'), (2, 'b')`,
      `VALUES (1, 'A'), (3, 'c')`,
    );
    await admin.query(`
      CREATE TABLE shop.${t.live.name}_child () INHERITS (${t.quoted});
      ALTER TABLE shop.${t.live.name}_child OWNER TO ${roles.owner};
      INSERT INTO shop.${t.live.name}_child VALUES (1, 'child one'), (4, 'child four');`);
    expect(await t.swap('merge', ['id'])).toMatchObject({
      status: 'swapped',
      result: { tables: [{ result: { inserted: 1, updated: 1, deleted: 1 } }] },
    });
    expect(await t.difference()).toEqual(EQUAL);
    expect(await t.rows(`shop.${t.live.name}_child`)).toEqual([
      { id: 1, v: 'child one' },
      { id: 4, v: 'child four' },
    ]);
  });

  it('publishes into a partitioned table across its partitions', async () => {
    const t = await setUp(
      `CREATE TABLE %s (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
       CREATE TABLE %s_low PARTITION OF %s FOR VALUES FROM (MINVALUE) TO (10);
       CREATE TABLE %s_high PARTITION OF %s FOR VALUES FROM (10) TO (MAXVALUE)`,
      `VALUES (1, 'a'), (2, 'b'), (11, 'k')`,
      `VALUES (1, 'A'), (12, 'l'), (11, 'k')`,
    );
    expect(await t.swap('merge', ['id'])).toMatchObject({ status: 'swapped' });
    expect(await t.difference(t.quoted)).toEqual(EQUAL);
  });

  it('names the foreign key that still references a row staging no longer has', async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int PRIMARY KEY, v text)',
      `VALUES (1, 'a'), (2, 'b')`,
      `VALUES (1, 'a')`,
    );
    await admin.query(`
      CREATE TABLE shop.${t.live.name}_ref (item int CONSTRAINT item_fk REFERENCES ${t.quoted});
      INSERT INTO shop.${t.live.name}_ref VALUES (2);`);
    const error = await failure(t.swap('merge', ['id']));
    expect((error as DatabaseError).sqlState).toBe(SYNC_SQLSTATE.badStagingData);
    expect(error.message).toContain(
      'rows the staging table no longer has are still referenced through foreign key item_fk (Key (id)=(2) is still referenced',
    );
    expect(await t.rows()).toHaveLength(2);
  });
});

describe('truncate', () => {
  it("replaces only the parent's own rows: an inheritance child keeps its rows, which SELECT on the parent still shows", async () => {
    const t = await setUp(
      'CREATE TABLE %s (id int, v text)',
      `VALUES (1, 'old'), (2, 'old')`,
      `VALUES (3, 'new'), (4, 'new')`,
    );
    const child = `shop.${t.live.name}_child`;
    await admin.query(`
      CREATE TABLE ${child} (extra text) INHERITS (${t.quoted});
      ALTER TABLE ${child} OWNER TO ${roles.owner};
      INSERT INTO ${child} VALUES (10, 'child', 'x');`);
    expect(await t.swap('truncate')).toMatchObject({ status: 'swapped' });
    expect(await t.difference()).toEqual(EQUAL);
    expect(await t.rows(child)).toEqual([{ id: 10, v: 'child', extra: 'x' }]);
    expect(await t.rows()).toEqual([
      { id: 3, v: 'new' },
      { id: 4, v: 'new' },
      { id: 10, v: 'child' },
    ]);
  });

  it('refuses a partitioned table, suggesting rename (partition by partition) or merge, and leaves its partitions alone', async () => {
    const t = await setUp(
      `CREATE TABLE %s (id int, v text) PARTITION BY LIST (id);
       CREATE TABLE %s_one PARTITION OF %s FOR VALUES IN (1);
       CREATE TABLE %s_rest PARTITION OF %s DEFAULT`,
      `VALUES (1, 'old'), (2, 'old')`,
      `VALUES (1, 'new')`,
    );
    const error = await failure(t.swap('truncate'));
    expect(error).toBeInstanceOf(PreflightError);
    expect(error.message).toBe(
      `cannot publish into ${t.quoted} by truncate: it is a partitioned table, and strategy "truncate" does not publish into partitioned tables. Use the default strategy "rename" (partition by partition) or "merge" for this table.`,
    );
    expect(await t.rows()).toEqual([
      { id: 1, v: 'old' },
      { id: 2, v: 'old' },
    ]);
  });
});
