/**
 * A FOR ALL TABLES publication publishes every table of the database, and a schema cannot be
 * left out of it: while one exists, staging is created UNLOGGED (unlogged tables are never
 * published) and made logged only when it is to become the live table. Real PostgreSQL, the
 * pipeline as its own non-superuser login.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { createStagingTable } from '../lambdas/core/load/staging';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import type { SwapStrategy } from '../lambdas/core/swap/types';
import type { TableTransfer } from '../lambdas/core/transfer/types';
import { freshDatabase, type TestDatabase } from './support/db';
import { uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner');
let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;

function transfer(target: QualifiedName, strategy: SwapStrategy, stagingName: string) {
  return {
    table: { source: target, target, strategy, allowEmpty: false },
    staging: { schema: STAGING_SCHEMA, name: stagingName },
    columns: [
      { name: 'id', selectExpression: 'id', targetType: 'integer', figures: 'nulls' },
      { name: 'note', selectExpression: 'note', targetType: 'text', figures: 'nulls' },
    ],
    s3Prefix: 's3://bucket/run/table/',
  } satisfies TableTransfer;
}

async function persistence(relation: string): Promise<string> {
  const { rows } = await admin.query<{ p: string }>(
    'SELECT relpersistence::text AS p FROM pg_class WHERE oid = $1::regclass',
    [relation],
  );
  return rows[0]!.p;
}

/** The tables the publication publishes now, as pg_publication_tables lists them. */
async function published(): Promise<string[]> {
  const { rows } = await admin.query<{ t: string }>(
    `SELECT format('%I.%I', schemaname, tablename) AS t FROM pg_publication_tables
     WHERE pubname = 'everything' ORDER BY 1`,
  );
  return rows.map((row) => row.t);
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  await admin.query(`
    CREATE ROLE ${roles.owner};
    GRANT ${roles.owner} TO ${db.pipelineLogin.user};
    GRANT CREATE, USAGE ON SCHEMA public TO ${roles.owner}, ${db.pipelineLogin.user};
    CREATE TABLE public.events (id integer PRIMARY KEY, note text);
    CREATE TABLE public.totals (id integer PRIMARY KEY, note text);
    ALTER TABLE public.events OWNER TO ${roles.owner};
    ALTER TABLE public.totals OWNER TO ${roles.owner};
    INSERT INTO public.events VALUES (1, 'old');
    INSERT INTO public.totals VALUES (1, 'old');
    CREATE PUBLICATION everything FOR ALL TABLES;
  `);
  sql = new PgSqlClient(await db.connect('redshift-aurora-sync', db.pipelineLogin));
  await installSchema(sql);
});

describe('staging under a FOR ALL TABLES publication', () => {
  it('is loaded unlogged, never published, and made logged before a rename publishes it', async () => {
    const events = transfer({ schema: 'public', name: 'events' }, 'rename', 'events_run1');
    await createStagingTable(sql, events);
    const staging = `${STAGING_SCHEMA}.events_run1`;
    expect(await persistence(staging)).toBe('u');
    await sql.query(`INSERT INTO ${staging} VALUES (1, 'new'), (2, 'new')`);
    expect(await published()).not.toContain(staging);

    await prepareStaging(sql, {
      live: events.table.target,
      staging: events.staging,
      strategy: 'rename',
    });
    expect(await persistence(staging)).toBe('p');
    const swapped = await attemptSwap(
      sql,
      buildSwapPlan([{ live: events.table.target, staging: events.staging, strategy: 'rename' }], {
        runId: 'publication-rename',
      }),
    );
    expect(swapped.status).toBe('swapped');
    expect(await persistence('public.events')).toBe('p');
    expect(await published()).toContain('public.events');
  });

  it('stays unlogged for merge, which only copies from it, and the live table keeps publishing', async () => {
    const totals = transfer({ schema: 'public', name: 'totals' }, 'merge', 'totals_run1');
    await createStagingTable(sql, totals);
    const staging = `${STAGING_SCHEMA}.totals_run1`;
    await sql.query(`INSERT INTO ${staging} VALUES (1, 'new')`);
    await prepareStaging(sql, {
      live: totals.table.target,
      staging: totals.staging,
      strategy: 'merge',
    });
    expect(await persistence(staging)).toBe('u');
    const merged = await attemptSwap(
      sql,
      buildSwapPlan(
        [
          {
            live: totals.table.target,
            staging: totals.staging,
            strategy: 'merge',
            primaryKey: ['id'],
          },
        ],
        { runId: 'publication-merge' },
      ),
    );
    expect(merged.status).toBe('swapped');
    const { rows } = await admin.query('SELECT note FROM public.totals');
    expect(rows).toEqual([{ note: 'new' }]);
    expect(await published()).toContain('public.totals');
  });

  it("of an increment stays unlogged and gets only statistics, none of live's indexes", async () => {
    await admin.query(`CREATE TABLE public.ledger (id integer PRIMARY KEY, note text);
      CREATE INDEX ledger_note ON public.ledger (note);
      ALTER TABLE public.ledger OWNER TO ${roles.owner}`);
    const ledger = transfer({ schema: 'public', name: 'ledger' }, 'rename', 'ledger_run1');
    await createStagingTable(sql, ledger);
    const staging = `${STAGING_SCHEMA}.ledger_run1`;
    await sql.query(`INSERT INTO ${staging} VALUES (1, 'changed'), (2, 'new')`);
    const prepared = await prepareStaging(sql, {
      live: ledger.table.target,
      staging: ledger.staging,
      strategy: 'increment',
    });
    expect(prepared.statements).toEqual([]);
    expect(await persistence(staging)).toBe('u');
    const { rows } = await admin.query(
      `SELECT (SELECT count(*)::int FROM pg_index WHERE indrelid = $1::regclass) AS indexes,
              reltuples::int AS analyzed_rows FROM pg_class WHERE oid = $1::regclass`,
      [staging],
    );
    expect(rows).toEqual([{ indexes: 0, analyzed_rows: 2 }]);
  });

  it('is logged as usual when no FOR ALL TABLES publication exists', async () => {
    await admin.query('DROP PUBLICATION everything');
    try {
      const events = transfer({ schema: 'public', name: 'events' }, 'rename', 'events_run2');
      await createStagingTable(sql, events);
      expect(await persistence(`${STAGING_SCHEMA}.events_run2`)).toBe('p');
    } finally {
      await admin.query('CREATE PUBLICATION everything FOR ALL TABLES');
    }
  });
});
