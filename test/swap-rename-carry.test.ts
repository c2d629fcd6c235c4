/**
 * What the rename strategy carries beyond views and grants, on real PostgreSQL, with the
 * pipeline run as a real non-superuser login: serial and identity columns, table settings
 * (replica identity, TOAST options, CLUSTER mark, statistics targets, n_distinct), and what it
 * must refuse up front instead (policies and rules elsewhere that read the table, unlogged
 * tables, views it may not replace, a published staging schema). Users' objects are made as
 * the superuser acting as user roles; the pipeline is a member of those roles, as the README
 * tells users to make it.
 */
import { chownSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import { type QualifiedName, quoteQualified } from '../lambdas/core/identifiers';
import { buildCreateStagingStatement } from '../lambdas/core/load/staging';
import { RETIRED_SCHEMA, STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import {
  attemptSwap,
  dropExpiredVersions,
  prepareStaging,
  retiredVersions,
  rollback,
} from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { preflight } from '../lambdas/core/swap/preflight';
import type { TableSwap } from '../lambdas/core/swap/types';
import { freshDatabase, type TestDatabase } from './support/db';
import { uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner', 'analyst', 'publisher');

let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;
let serverVersion: number;

/** A staging table made as the pipeline makes it (LIKE live), filled by `fill`. */
async function stage(live: QualifiedName, name: string, fill: string): Promise<TableSwap> {
  const staging = { schema: STAGING_SCHEMA, name };
  await pipeline.query(buildCreateStagingStatement(staging, { live, serverVersion }));
  await pipeline.query(`INSERT INTO ${quoteQualified(staging)} ${fill}`);
  return { live, staging, strategy: 'rename' };
}

async function swap(table: TableSwap, runId: string) {
  await preflight(sql, [table], { withStaging: true });
  await prepareStaging(sql, table);
  return attemptSwap(sql, buildSwapPlan([table], { runId }));
}

/** Rows of `query` run by the superuser acting as `role` (a user of the table). */
async function asUser<T extends pg.QueryResultRow>(role: string, query: string): Promise<T[]> {
  await admin.query(`SET ROLE ${role}`);
  try {
    return (await admin.query<T>(query)).rows;
  } finally {
    await admin.query('RESET ROLE');
  }
}

async function preflightProblems(table: TableSwap): Promise<readonly string[]> {
  const error = await preflight(sql, [table], { withStaging: true }).catch((e: unknown) => e);
  return error instanceof PreflightError ? error.problems : [];
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  const { owner, analyst } = roles;
  await admin.query(`
    CREATE ROLE ${owner}; CREATE ROLE ${analyst}; CREATE ROLE ${roles.publisher};
    GRANT CREATE ON DATABASE ${db.name} TO ${owner}, ${roles.publisher};
    GRANT CREATE, USAGE ON SCHEMA public TO ${owner}, ${analyst};
    GRANT ${owner}, ${analyst} TO ${db.pipelineLogin.user};`);
  pipeline = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sql = new PgSqlClient(pipeline);
  await installSchema(sql);
  const { rows } = await pipeline.query<{ v: number }>(
    `SELECT current_setting('server_version_num')::int AS v, current_user AS u`,
  );
  serverVersion = rows[0]!.v;
});

describe('serial columns', () => {
  const tickets = { schema: 'public', name: 'tickets' };

  it('stay attached to the live column and keep counting; the retired copy still inserts', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.tickets (id serial PRIMARY KEY, title text);
       INSERT INTO public.tickets (title) VALUES ('a'), ('b'), ('c');`,
    );
    const table = await stage(tickets, 'tickets_run1', `VALUES (1, 'a'), (2, 'b'), (3, 'c')`);

    expect(await swap(table, 'serial-1')).toMatchObject({ status: 'swapped' });

    const { rows } = await admin.query(
      `SELECT pg_get_serial_sequence('public.tickets', 'id') AS sequence`,
    );
    expect(rows[0]!.sequence).toBe('public.tickets_id_seq');
    expect(
      await asUser(roles.owner, `INSERT INTO public.tickets (title) VALUES ('d') RETURNING id`),
    ).toEqual([{ id: 4 }]);
    // The retired copy (reachable by the pipeline and superusers) still takes its defaults.
    const [retired] = await retiredVersions(sql, tickets);
    const { rows: late } = await admin.query(
      `INSERT INTO ${RETIRED_SCHEMA}.${retired!.retiredTable} (title) VALUES ('late') RETURNING id`,
    );
    expect(late).toEqual([{ id: 5 }]);

    // Retention drops the retired copy, never the sequence the live table uses.
    expect(await dropExpiredVersions(sql, tickets, { keep: 0 })).toMatchObject({
      dropped: [retired!.retiredTable],
    });
    expect(
      await asUser(roles.owner, `INSERT INTO public.tickets (title) VALUES ('e') RETURNING id`),
    ).toEqual([{ id: 6 }]);
  });

  it('retention keeps, and names, a retired version that something still depends on', async () => {
    const table = await stage(tickets, 'tickets_run2', 'SELECT * FROM public.tickets');
    expect(await swap(table, 'serial-2')).toMatchObject({ status: 'swapped' });
    const [retired] = await retiredVersions(sql, tickets);
    await admin.query(
      `CREATE VIEW public.old_tickets AS SELECT * FROM ${RETIRED_SCHEMA}.${retired!.retiredTable}`,
    );

    expect(await dropExpiredVersions(sql, tickets, { keep: 0 })).toEqual({
      dropped: [],
      leftForLater: [],
      blockedByDependents: [
        { retiredTable: retired!.retiredTable, dependents: ['view public.old_tickets'] },
      ],
    });
    expect((await retiredVersions(sql, tickets)).map((v) => v.retiredTable)).toEqual([
      retired!.retiredTable,
    ]);
  });
});

describe('identity columns', () => {
  const events = { schema: 'public', name: 'events' };

  it('are carried with their kind and options, and go on from where the old table was', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.events (
         id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 10) PRIMARY KEY,
         n integer GENERATED BY DEFAULT AS IDENTITY,
         title text);
       INSERT INTO public.events (title) VALUES ('a'), ('b'), ('c');`,
    );
    const table = await stage(events, 'events_run1', `VALUES (100, 1, 'a'), (110, 2, 'b')`);

    expect(await swap(table, 'identity-1')).toMatchObject({ status: 'swapped' });

    const { rows: identity } = await admin.query(`
      SELECT a.attname, a.attidentity, s.seqstart::int AS start, s.seqincrement::int AS increment,
             pg_get_serial_sequence('public.events', a.attname) AS sequence
      FROM pg_attribute a
      JOIN pg_sequence s ON s.seqrelid = pg_get_serial_sequence('public.events', a.attname)::regclass
      WHERE a.attrelid = 'public.events'::regclass AND a.attnum > 0 ORDER BY a.attnum`);
    expect(identity).toEqual([
      {
        attname: 'id',
        attidentity: 'a',
        start: 100,
        increment: 10,
        sequence: 'public.events_id_seq',
      },
      { attname: 'n', attidentity: 'd', start: 1, increment: 1, sequence: 'public.events_n_seq' },
    ]);
    // The old table gave 100, 110, 120: the next is 130 (and n goes on from 3).
    expect(
      await asUser(roles.owner, `INSERT INTO public.events (title) VALUES ('d') RETURNING id, n`),
    ).toEqual([{ id: '130', n: 4 }]);
    await expect(
      asUser(roles.owner, `INSERT INTO public.events (id, title) VALUES (1, 'x')`),
    ).rejects.toMatchObject({ code: '428C9' });

    const [retired] = await retiredVersions(sql, events);
    const { rows: late } = await admin.query(
      `INSERT INTO ${RETIRED_SCHEMA}.${retired!.retiredTable} (title) VALUES ('late') RETURNING id`,
    );
    expect(late).toEqual([{ id: '130' }]);
  });

  it('survive another swap and a rollback without going backwards', async () => {
    const table = await stage(events, 'events_run2', 'SELECT * FROM public.events');
    expect(await swap(table, 'identity-2')).toMatchObject({ status: 'swapped' });
    expect(
      await asUser(roles.owner, `INSERT INTO public.events (title) VALUES ('e') RETURNING id`),
    ).toEqual([{ id: '140' }]);

    expect(await rollback(sql, events, { runId: 'identity-rollback' })).toMatchObject({
      status: 'swapped',
    });
    const { rows } = await admin.query(
      `SELECT a.attidentity FROM pg_attribute a
       WHERE a.attrelid = 'public.events'::regclass AND a.attname = 'id'`,
    );
    expect(rows).toEqual([{ attidentity: 'a' }]);
    expect(
      await asUser(roles.owner, `INSERT INTO public.events (title) VALUES ('f') RETURNING id`),
    ).toEqual([{ id: '150' }]);
  });
});

describe('what reads the table from elsewhere', () => {
  it('refuses a policy on another table and a rule that reference the table, by name', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.acl_orders (id integer PRIMARY KEY, user_name text);
       CREATE TABLE public.acl_users (name text);
       ALTER TABLE public.acl_users ENABLE ROW LEVEL SECURITY;
       CREATE POLICY buyers ON public.acl_users
         USING (EXISTS (SELECT 1 FROM public.acl_orders o WHERE o.user_name = name));
       CREATE VIEW public.order_inbox AS SELECT 1 AS id, 'x'::text AS user_name;
       CREATE RULE into_orders AS ON INSERT TO public.order_inbox
         DO INSTEAD INSERT INTO public.acl_orders VALUES (NEW.id, NEW.user_name);`,
    );
    const table = await stage(
      { schema: 'public', name: 'acl_orders' },
      'acl_orders_run1',
      `VALUES (1, 'x')`,
    );

    expect(await preflightProblems(table)).toEqual([
      expect.stringMatching(
        /^public\.acl_orders: policy buyers on table public\.acl_users \(policy on another table\) cannot be carried over .* through a view/,
      ),
      expect.stringMatching(
        /^public\.acl_orders: rule into_orders on view public\.order_inbox \(rule\) cannot be carried over/,
      ),
    ]);
  });

  it('refuses an unlogged table', async () => {
    await asUser(
      roles.owner,
      'CREATE UNLOGGED TABLE public.scratch (id integer); INSERT INTO public.scratch VALUES (1);',
    );
    const table = await stage({ schema: 'public', name: 'scratch' }, 'scratch_run1', 'VALUES (2)');
    expect(await preflightProblems(table)).toEqual([
      expect.stringMatching(
        /^public\.scratch: table public\.scratch \(unlogged table\) .* SET LOGGED/,
      ),
    ]);
  });
});

describe('tablespaces', () => {
  it('refuses a table whose index is in a non-default tablespace', async () => {
    // The server runs as its own OS user: give it a directory of its own for the tablespace.
    const { rows } = await admin.query<{ dir: string }>(
      `SELECT current_setting('data_directory') AS dir`,
    );
    const server = statSync(rows[0]!.dir);
    const location = mkdtempSync(join(tmpdir(), 'carry-tablespace-'));
    chownSync(location, server.uid, server.gid);
    const tablespace = uniqueRoles('archive_space').archive_space;
    await admin.query(`CREATE TABLESPACE ${tablespace} LOCATION '${location}'`);
    try {
      await admin.query(`
        CREATE TABLE public.archive (id integer, note text);
        CREATE INDEX archive_id_idx ON public.archive (id) TABLESPACE ${tablespace};
        ALTER TABLE public.archive OWNER TO ${roles.owner};`);
      const table = await stage(
        { schema: 'public', name: 'archive' },
        'archive_run1',
        'VALUES (1)',
      );
      expect(await preflightProblems(table)).toEqual([
        expect.stringMatching(
          new RegExp(
            `^public\\.archive: index public\\.archive_id_idx in tablespace ${tablespace} \\(tablespace\\) .* SET TABLESPACE pg_default`,
          ),
        ),
      ]);
    } finally {
      await admin.query('DROP TABLE IF EXISTS public.archive');
      await admin.query(`DROP TABLESPACE ${tablespace}`);
      rmSync(location, { recursive: true, force: true });
    }
  });
});

describe('table settings', () => {
  it('carries replica identity, TOAST options, the CLUSTER mark, statistics targets and n_distinct', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.metrics (id integer PRIMARY KEY, code text NOT NULL, body text)
         WITH (toast.autovacuum_enabled = false);
       CREATE UNIQUE INDEX metrics_code_idx ON public.metrics (code);
       ALTER TABLE public.metrics REPLICA IDENTITY USING INDEX metrics_code_idx;
       ALTER TABLE public.metrics CLUSTER ON metrics_code_idx;
       ALTER TABLE public.metrics ALTER COLUMN code SET STATISTICS 500;
       ALTER TABLE public.metrics ALTER COLUMN body SET (n_distinct = -0.5, n_distinct_inherited = 100);
       INSERT INTO public.metrics VALUES (1, 'a', 'x');`,
    );
    const settings = `
      SELECT c.relreplident,
             (SELECT t.reloptions FROM pg_class t WHERE t.oid = c.reltoastrelid) AS toast_options,
             (SELECT array_agg(ic.relname::text ORDER BY ic.relname) FROM pg_index i
              JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisreplident) AS replica_index,
             (SELECT array_agg(ic.relname::text ORDER BY ic.relname) FROM pg_index i
              JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid AND i.indisclustered) AS clustered_index,
             (SELECT array_agg(format('%s:%s:%s', a.attname, coalesce(a.attstattarget, -1), a.attoptions) ORDER BY a.attnum)
              FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
      FROM pg_class c WHERE c.oid = 'public.metrics'::regclass`;
    const before = (await admin.query(settings)).rows[0];
    expect(before).toEqual({
      relreplident: 'i',
      toast_options: ['autovacuum_enabled=false'],
      replica_index: ['metrics_code_idx'],
      clustered_index: ['metrics_code_idx'],
      columns: ['id:-1:', 'code:500:', 'body:-1:{n_distinct=-0.5,n_distinct_inherited=100}'],
    });
    const table = await stage(
      { schema: 'public', name: 'metrics' },
      'metrics_run1',
      `VALUES (2, 'b', 'y')`,
    );

    expect(await swap(table, 'settings-1')).toMatchObject({ status: 'swapped' });

    expect((await admin.query(settings)).rows[0]).toEqual(before);

    // A version coming back by rollback gets the live table's settings, not its own.
    await admin.query(`
      ALTER TABLE public.metrics REPLICA IDENTITY FULL, SET WITHOUT CLUSTER,
        SET (toast.autovacuum_enabled = true), ALTER COLUMN code SET STATISTICS -1,
        ALTER COLUMN body RESET (n_distinct_inherited)`);
    const changed = (await admin.query(settings)).rows[0];
    expect(
      await rollback(sql, { schema: 'public', name: 'metrics' }, { runId: 'settings-rollback' }),
    ).toMatchObject({
      status: 'swapped',
    });
    expect((await admin.query(settings)).rows[0]).toEqual(changed);
  });
});

describe('dependent views the pipeline may not replace', () => {
  it('names a view whose schema its owner lost CREATE on, and what to grant (the swap fails otherwise)', async () => {
    await admin.query(`
      CREATE SCHEMA reports;
      GRANT USAGE, CREATE ON SCHEMA reports TO ${roles.analyst};
      SET ROLE ${roles.owner};
      CREATE TABLE public.sales (id integer PRIMARY KEY, amount numeric);
      INSERT INTO public.sales VALUES (1, 10);
      GRANT SELECT ON public.sales TO ${roles.analyst};
      SET ROLE ${roles.analyst};
      CREATE VIEW reports.sales_total AS SELECT sum(amount) AS total FROM public.sales;
      RESET ROLE;
      REVOKE CREATE ON SCHEMA reports FROM ${roles.analyst};`);
    const sales = { schema: 'public', name: 'sales' };
    const table = await stage(sales, 'sales_run1', 'VALUES (2, 20)');

    expect(await preflightProblems(table)).toEqual([
      `public.sales: view reports.sales_total (owner ${roles.analyst}) cannot be re-pointed to the new version: CREATE OR REPLACE VIEW needs CREATE on schema reports, which neither its owner nor the pipeline's role has; run GRANT CREATE ON SCHEMA reports TO ${roles.analyst}.`,
    ]);
    // Why: past the preflight, the swap itself fails on CREATE OR REPLACE VIEW.
    await prepareStaging(sql, table);
    await expect(
      attemptSwap(sql, buildSwapPlan([table], { runId: 'views-1' })),
    ).rejects.toMatchObject({ sqlState: '42501', message: expect.stringContaining('reports') });

    await admin.query(`GRANT CREATE ON SCHEMA reports TO ${roles.analyst}`);
    expect(await swap(table, 'views-2')).toMatchObject({ status: 'swapped' });
    expect(await asUser(roles.analyst, 'SELECT total FROM reports.sales_total')).toEqual([
      { total: '20' },
    ]);
  });
});

describe('publications', () => {
  it('a FOR ALL TABLES publication takes in the new version by itself', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.shipments (id integer PRIMARY KEY); INSERT INTO public.shipments VALUES (1);`,
    );
    await admin.query('CREATE PUBLICATION everything FOR ALL TABLES');
    try {
      const shipments = { schema: 'public', name: 'shipments' };
      const table = await stage(shipments, 'shipments_run1', 'VALUES (2)');
      expect(await swap(table, 'publication-1')).toMatchObject({ status: 'swapped' });
      const { rows } = await admin.query(
        `SELECT schemaname, tablename FROM pg_publication_tables
         WHERE pubname = 'everything' AND tablename = 'shipments'`,
      );
      expect(rows).toEqual([{ schemaname: 'public', tablename: 'shipments' }]);
    } finally {
      await admin.query('DROP PUBLICATION everything');
    }
  });

  it('a FOR TABLE publication lists the new version instead of the retired one, column list and row filter (PG15+) kept', async () => {
    await asUser(
      roles.owner,
      `CREATE TABLE public.parcels (id integer PRIMARY KEY, weight integer, secret text);
       INSERT INTO public.parcels VALUES (1, 5, 'x');`,
    );
    await admin.query(
      serverVersion >= 150000
        ? 'CREATE PUBLICATION parcels_out FOR TABLE public.parcels (id, weight) WHERE (weight > 10)'
        : 'CREATE PUBLICATION parcels_out FOR TABLE public.parcels',
    );
    await admin.query(`ALTER PUBLICATION parcels_out OWNER TO ${roles.publisher}`);
    const parcels = { schema: 'public', name: 'parcels' };
    const published = `SELECT * FROM pg_publication_tables WHERE pubname = 'parcels_out'`;
    const before = (await admin.query(published)).rows;
    const table = await stage(parcels, 'parcels_run1', `VALUES (2, 20, 'y')`);

    // Changing the publication takes its owner's rights, which the preflight asks for.
    expect(await preflightProblems(table)).toEqual([
      `public.parcels: the pipeline's database role must act as role ${roles.publisher} (which owns publication parcels_out) to carry it over; run GRANT ${roles.publisher} TO <pipeline role>.`,
    ]);
    await admin.query(`GRANT ${roles.publisher} TO ${db.pipelineLogin.user}`);
    expect(await swap(table, 'publication-2')).toMatchObject({ status: 'swapped' });

    expect((await admin.query(published)).rows).toEqual(before);
    const { rows } = await admin.query(
      `SELECT pr.prrelid = 'public.parcels'::regclass AS live FROM pg_publication_rel pr
       JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = 'parcels_out'`,
    );
    expect(rows).toEqual([{ live: true }]);
  });

  it('refuses a staging schema published FOR TABLES IN SCHEMA (PostgreSQL 15+)', async (context) => {
    if (serverVersion < 150000) context.skip();
    await admin.query(`CREATE PUBLICATION leaky FOR TABLES IN SCHEMA ${STAGING_SCHEMA}`);
    try {
      const error = await preflight(sql, []).catch((e: unknown) => e);
      expect((error as PreflightError).problems).toEqual([
        `publication leaky publishes the staging schema ${STAGING_SCHEMA} (FOR TABLES IN SCHEMA), so every load into staging would be replicated; run ALTER PUBLICATION leaky DROP TABLES IN SCHEMA ${STAGING_SCHEMA}.`,
      ]);
    } finally {
      await admin.query('DROP PUBLICATION leaky');
    }
  });
});
