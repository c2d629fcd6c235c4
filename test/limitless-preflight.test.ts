/**
 * The preflight on an Aurora Limitless database, over the stand-in rds_aurora.limitless_tables
 * (local/emulators/limitless-shims.ts) on a real PostgreSQL: per table type, the strategies AWS
 * documents as working pass and the rest are refused, naming the table, its type, what is
 * refused and the strategy to use.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { preflight } from '../lambdas/core/swap/preflight';
import type { SwapStrategy, TableSwap } from '../lambdas/core/swap/types';
import type { SyncTable } from '../lambdas/core/transfer/types';
import { preflightTable } from '../lambdas/pipeline/run-context';
import { declareLimitlessTable, installLimitlessShims } from '../local/emulators/limitless-shims';
import { freshDatabase, type TestDatabase } from './support/db';
import { pipelineSession, uniqueRoles } from './support/swap-fixtures';

const SHARDED: QualifiedName = { schema: 'public', name: 'orders' };
const REFERENCE: QualifiedName = { schema: 'public', name: 'zipcodes' };
const STANDARD: QualifiedName = { schema: 'public', name: 'notes' };
const STAGING: QualifiedName = { schema: 'redshift_sync_staging', name: 'unused' };
const DOCS = 'https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide';
const roles = uniqueRoles('pipeline');

let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('setup');
  await admin.query(`
    CREATE TABLE public.orders (id int, region text, v text, PRIMARY KEY (id, region));
    CREATE TABLE public.zipcodes (zipcode int PRIMARY KEY, city text);
    CREATE TABLE public.notes (id int PRIMARY KEY, body text);
  `);
  ({ sql } = await pipelineSession(db, roles.pipeline, []));
  for (const table of ['orders', 'zipcodes', 'notes']) {
    await admin.query(`ALTER TABLE public.${table} OWNER TO ${roles.pipeline}`);
  }
  await admin.query(`GRANT CREATE ON SCHEMA public TO ${roles.pipeline}`);
  await installLimitlessShims(admin);
  await declareLimitlessTable(admin, SHARDED, 'sharded', 'HASH (id, region)');
  await declareLimitlessTable(admin, REFERENCE, 'reference');
});

function swap(
  live: QualifiedName,
  strategy: SwapStrategy,
  primaryKey?: readonly string[],
): TableSwap {
  return { live, staging: STAGING, strategy, ...(primaryKey ? { primaryKey } : {}) };
}

async function problemsOf(tables: readonly TableSwap[]): Promise<readonly string[]> {
  try {
    await preflight(sql, tables);
    return [];
  } catch (error) {
    if (error instanceof PreflightError) return error.problems;
    throw error;
  }
}

describe('the preflight on Aurora Limitless', () => {
  it('refuses rename and truncate into a sharded table, naming the type and the strategy to use', async () => {
    expect(await problemsOf([swap(SHARDED, 'rename')])).toEqual([
      `public.orders is a sharded table of an Aurora Limitless database; strategy "rename" is refused there: the staging table is created as a standard table (rds_aurora.limitless_create_table_mode is "standard" by default, ${DOCS}/limitless-creating-config.html), so renaming it into place would replace the table by a standard one stored on a single shard. Use strategy "merge", whose DELETE, UPDATE and INSERT ... SELECT Limitless supports (${DOCS}/limitless-reference.DML-support.html) and which never updates its key columns.`,
    ]);
    expect(await problemsOf([swap(SHARDED, 'truncate')])).toEqual([
      expect.stringMatching(
        /^public\.orders is a sharded table of an Aurora Limitless database; strategy "truncate" is refused there: it empties the table with TRUNCATE ONLY, .* Use strategy "merge"/,
      ),
    ]);
  });

  it('lets merge into a sharded table by a key containing the shard key, and refuses one without', async () => {
    expect(await problemsOf([swap(SHARDED, 'merge')])).toEqual([]);
    expect(await problemsOf([swap(SHARDED, 'merge', ['region', 'id'])])).toEqual([]);
    expect(await problemsOf([swap(SHARDED, 'merge', ['id'])])).toEqual([
      expect.stringMatching(
        /^public\.orders is a sharded table of an Aurora Limitless database whose shard key HASH \(id, region\) has region outside the "primaryKey" \(id\) that strategy "merge" updates rows by.*add region to "primaryKey"/,
      ),
    ]);
  });

  it('checks the key of an increment as the run publishes it (preflightTable): mode "merge" by a key without the shard key is refused, "append" is not', async () => {
    const incremental = (
      mode: 'merge' | 'append',
      primaryKey?: readonly string[],
      strategy: SwapStrategy = 'rename',
    ): SyncTable => ({
      source: { schema: 'sales', name: 'orders' },
      target: SHARDED,
      strategy,
      allowEmpty: false,
      incremental: { cursor: 'v', mode, deletes: 'ignore' },
      ...(primaryKey ? { primaryKey } : {}),
    });
    const delta = (table: SyncTable) => preflightTable(table, STAGING, true);
    expect(await problemsOf([delta(incremental('merge', ['id']))])).toEqual([
      `public.orders is a sharded table of an Aurora Limitless database whose shard key HASH (id, region) has region outside the "primaryKey" (id) that incremental mode "merge" updates rows by, so its UPDATE would set shard key columns, which Limitless does not support (${DOCS}/limitless-reference.DML-limitations.html); add region to "primaryKey", or leave it unset to use the table's primary key, which Limitless makes contain the shard key.`,
    ]);
    expect(await problemsOf([delta(incremental('merge', ['region', 'id']))])).toEqual([]);
    expect(await problemsOf([delta(incremental('merge'))])).toEqual([]);
    // Append only inserts; its key serves deletes "reconcile", which never sets a column.
    expect(await problemsOf([delta(incremental('append', ['id']))])).toEqual([]);
    // A full run of the same table publishes by its strategy, which checks its own key.
    const full = preflightTable(incremental('append', ['id'], 'merge'), STAGING, false);
    expect(await problemsOf([full])).toEqual([
      expect.stringContaining(
        'outside the "primaryKey" (id) that strategy "merge" updates rows by',
      ),
    ]);
  });

  it('refuses rename into a reference table and lets merge', async () => {
    expect(await problemsOf([swap(REFERENCE, 'rename')])).toEqual([
      expect.stringMatching(
        /^public\.zipcodes is a reference table of an Aurora Limitless database; strategy "rename" is refused there/,
      ),
    ]);
    expect(await problemsOf([swap(REFERENCE, 'merge')])).toEqual([]);
  });

  it('leaves a standard table, and a table not published yet, to the checks every table gets', async () => {
    for (const strategy of ['rename', 'truncate', 'merge'] as const) {
      expect(await problemsOf([swap(STANDARD, strategy)])).toEqual([]);
    }
    expect(await problemsOf([swap({ schema: 'public', name: 'first_run' }, 'rename')])).toEqual([]);
  });

  it('refuses rename of a table in a FOR TABLE publication (ALTER PUBLICATION is unsupported), not merge or truncate', async () => {
    await admin.query(`CREATE TABLE public.published (id int PRIMARY KEY, body text)`);
    await admin.query(`ALTER TABLE public.published OWNER TO ${roles.pipeline}`);
    await admin.query(`CREATE PUBLICATION "to lake" FOR TABLE public.published`);
    const published = { schema: 'public', name: 'published' };
    const limitlessOnly = async (strategy: SwapStrategy) =>
      (await problemsOf([swap(published, strategy)])).filter((p) => p.includes('Limitless'));
    expect(await limitlessOnly('rename')).toEqual([
      `public.published is in publication "to lake" (FOR TABLE) on an Aurora Limitless database; strategy "rename" would keep the new version there with ALTER PUBLICATION ... ADD TABLE, which Limitless does not support (${DOCS}/limitless-reference.DDL-support.html). Use strategy "merge" or "truncate", which keep the table itself in its publications.`,
    ]);
    expect(await limitlessOnly('merge')).toEqual([]);
    expect(await limitlessOnly('truncate')).toEqual([]);
  });

  it('lists every refusal of a run at once', async () => {
    const problems = await problemsOf([
      swap(SHARDED, 'rename'),
      swap(REFERENCE, 'truncate'),
      swap(STANDARD, 'rename'),
    ]);
    expect(problems.map((problem) => problem.split(';')[0])).toEqual([
      'public.orders is a sharded table of an Aurora Limitless database',
      'public.zipcodes is a reference table of an Aurora Limitless database',
    ]);
  });
});
