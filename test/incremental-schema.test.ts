/**
 * The incremental sync's database objects on real PostgreSQL, as the pipeline's own role:
 * figures_of computes what buildFiguresQuery computes (the contract the whole-table proof
 * rests on), check_increment names each figure that differs and compares floats at Redshift's
 * digits, and a database of the version before incremental sync upgrades over its data.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { installSchema, MIGRATIONS, type SchemaArtifact } from '../lambdas/core/schema/install';
import { RUN_RECORDS_SQL } from '../lambdas/core/schema/runs';
import { WATERMARKS_SQL } from '../lambdas/core/schema/watermarks';
import { buildFiguresQuery, parseFigures } from '../lambdas/core/transfer/figures';
import type { FigureKind } from '../lambdas/core/transfer/types';
import { freshDatabase, type TestDatabase } from './support/db';

let db: TestDatabase;
let client: pg.Client;

/** Every figure kind, with names that need quoting. */
const COLUMNS: readonly { name: string; figures: FigureKind; type: string }[] = [
  { name: 'Id', figures: 'integer', type: 'bigint' },
  { name: 'amount', figures: 'decimal', type: 'numeric(20,4)' },
  { name: 'day', figures: 'date', type: 'date' },
  { name: 'at', figures: 'timestamp', type: 'timestamp' },
  { name: 'at tz', figures: 'timestamptz', type: 'timestamptz' },
  { name: 'r', figures: 'float4', type: 'real' },
  { name: 'd', figures: 'float8', type: 'double precision' },
  { name: 'note"x', figures: 'octets', type: 'text' },
  { name: 'flag', figures: 'boolean', type: 'boolean' },
  { name: 'tm', figures: 'nulls', type: 'time' },
];
const PLAN_COLUMNS = COLUMNS.map(({ name, figures }) => ({ name, figures }));

beforeAll(async () => {
  db = await freshDatabase();
  const admin = await db.connect('test setup');
  await admin.query(`GRANT CREATE ON SCHEMA public TO ${db.pipelineLogin.user}`);
  client = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  await installSchema(new PgSqlClient(client));
  await client.query(`
    CREATE TABLE public."Every Kind" (${COLUMNS.map((c) => `"${c.name.replaceAll('"', '""')}" ${c.type}`).join(', ')});
    INSERT INTO public."Every Kind" VALUES
      (1, 1.5, '2026-01-01', '2026-01-01 10:00:00.123456', '2026-01-01 10:00:00+02', 0.1, 1.7976931348623157e308, 'a|b', true, '10:00'),
      (-7, -99999.0001, '1970-01-01', '1970-01-01 00:00:00', '2262-04-11 23:47:16.5+00', -3.4e38, 5e-324, 'Grüße', false, NULL),
      (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    CREATE TABLE public.empty_kind (LIKE public."Every Kind");
  `);
});

async function bothWays(table: string): Promise<{ ts: unknown; sql: unknown }> {
  const { rows: tsRows } = await client.query(
    `SELECT to_jsonb(f) AS figures FROM (${buildFiguresQuery(table, PLAN_COLUMNS)}) f`,
  );
  const { rows: sqlRows } = await client.query(
    'SELECT redshift_sync.figures_of($1::regclass, $2::jsonb) AS figures',
    [table, JSON.stringify(PLAN_COLUMNS)],
  );
  return { ts: tsRows[0].figures, sql: sqlRows[0].figures };
}

describe('redshift_sync.figures_of', () => {
  it('computes exactly what buildFiguresQuery computes, for every figure kind, full or empty', async () => {
    const full = await bothWays('public."Every Kind"');
    expect(full.sql).toEqual(full.ts);
    expect(Object.keys(full.sql as object)).toHaveLength(1 + 10 + 2 * 7 + 2);
    expect(parseFigures(full.sql as Record<string, unknown>, PLAN_COLUMNS).rows).toBe(3);
    const empty = await bothWays('public.empty_kind');
    expect(empty.sql).toEqual(empty.ts);
  });
});

async function check(figures: Record<string, unknown>): Promise<string | null> {
  try {
    await client.query(
      `SELECT redshift_sync.check_increment('public."Every Kind"'::regclass, $1::jsonb)`,
      [JSON.stringify({ columns: PLAN_COLUMNS, figures })],
    );
    return null;
  } catch (error) {
    const { code, message } = error as { code: string; message: string };
    return `${code} ${message}`;
  }
}

describe('the proof scan of live', () => {
  it('may use parallel workers inside the transaction that just wrote to live', async () => {
    // A plain SELECT run by EXECUTE ... INTO: it writes nothing and is not a cursor or a FOR
    // loop, so PostgreSQL may plan it in parallel even after the transaction's own UPDATE
    // ("When Can Parallel Query Be Used?",
    // https://www.postgresql.org/docs/15/when-can-parallel-query-be-used.html). auto_explain
    // shows the nested statement's plan (LOAD needs a superuser: the admin session).
    const admin = await db.connect('test setup');
    const plans: string[] = [];
    admin.on('notice', (notice) => plans.push(notice.message ?? ''));
    try {
      await admin.query(`CREATE TABLE public.scanned (id int, v text);
        INSERT INTO public.scanned SELECT g, 'v' || g FROM generate_series(1, 20000) g;
        ANALYZE public.scanned`);
      await admin.query('BEGIN');
      await admin.query(`LOAD 'auto_explain';
        SET LOCAL auto_explain.log_min_duration = 0; SET LOCAL auto_explain.log_nested_statements = on;
        SET LOCAL auto_explain.log_level = notice;
        SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0;
        SET LOCAL min_parallel_table_scan_size = 0; SET LOCAL max_parallel_workers_per_gather = 2`);
      await admin.query(`UPDATE public.scanned SET v = 'changed' WHERE id % 100 = 0`);
      plans.length = 0;
      await admin.query(
        `SELECT redshift_sync.figures_of('public.scanned', '[{"name": "id", "figures": "integer"}, {"name": "v", "figures": "octets"}]')`,
      );
      const proof = plans.find((plan) => plan.includes('to_jsonb(f)'));
      expect(proof).toMatch(/Workers Planned: 2/);
    } finally {
      await admin.query('ROLLBACK').catch(() => {});
      await admin.end();
    }
  });
});

describe('redshift_sync.check_increment', () => {
  it('passes equal figures, and floats equal at the digits Redshift prints', async () => {
    const { sql } = await bothWays('public."Every Kind"');
    const figures = sql as Record<string, string | null>;
    expect(await check(figures)).toBeNull();
    // Redshift prints 6 and 15 significant digits, PostgreSQL the shortest exact form.
    expect(await check({ ...figures, c5_max: '0.1', c6_max: '1.79769313486232e+308' })).toBeNull();
    // Counts a sum over no rows leaves NULL in one engine come back as 0 once parsed.
    expect(await check({ ...figures, c9_nulls: '2' })).toBeNull();
  });

  it('refuses with RS002, naming the table and each figure that differs', async () => {
    const { sql } = await bothWays('public."Every Kind"');
    const figures = sql as Record<string, string | null>;
    const refusal = await check({ ...figures, row_count: '4', c0_max: '2', c7_octets: '1' });
    expect(refusal).toMatch(/^RS002 the increment of "public"."Every Kind" was not applied/);
    expect(refusal).toContain('rows: 4 in Redshift, 3 in live');
    expect(refusal).toContain('"Id": max: 2 in Redshift, 1 in live');
    expect(refusal).toContain('"note""x": total bytes: 1 in Redshift, 10 in live');
    expect(await check({ ...figures, c6_min: '5e-323' })).toMatch(/d: min: 5e-323 in Redshift/);
  });
});

async function publish(mode: string, staged: string): Promise<unknown> {
  await client.query(
    `DROP TABLE IF EXISTS public.delta; CREATE TABLE public.delta (LIKE public.live)`,
  );
  await client.query(`INSERT INTO public.delta VALUES ${staged}`);
  const { rows } = await client.query(
    `SELECT redshift_sync.publish_increment('public.live', 'public.delta', ARRAY['id'], $1, NULL) AS result`,
    [mode],
  );
  return rows[0].result;
}

describe('redshift_sync.publish_increment', () => {
  it('merges without deleting: changed rows updated, unchanged ones not written, new keys inserted', async () => {
    await client.query(`CREATE TABLE public.live (id int PRIMARY KEY, v text);
      INSERT INTO public.live VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
    const before = await client.query(`SELECT xmin::text FROM public.live WHERE id = 2`);
    expect(await publish('merge', `(2, 'b'), (3, 'C'), (4, 'd')`)).toEqual({
      inserted: 1,
      updated: 1,
      deleted: 0,
    });
    const { rows } = await client.query('SELECT id, v FROM public.live ORDER BY id');
    expect(rows).toEqual([
      { id: 1, v: 'a' },
      { id: 2, v: 'b' },
      { id: 3, v: 'C' },
      { id: 4, v: 'd' },
    ]);
    expect((await client.query(`SELECT xmin::text FROM public.live WHERE id = 2`)).rows).toEqual(
      before.rows,
    );
  });

  it('appends every row, and names the constraint a row sent twice breaks', async () => {
    expect(await publish('append', `(5, 'e')`)).toEqual({ inserted: 1, updated: 0, deleted: 0 });
    await expect(publish('append', `(5, 'again')`)).rejects.toMatchObject({
      code: 'RS001',
      message: expect.stringMatching(
        /^cannot append public\.delta to public\.live: constraint live_pkey rejected the new rows/,
      ),
    });
    await expect(publish('upsert', `(6, 'f')`)).rejects.toMatchObject({
      code: 'RS112',
      message: expect.stringMatching(/unknown increment mode upsert/),
    });
  });
});

describe('an increment merged into a large live table', () => {
  it('looks its rows up by key instead of scanning all of live, as the planner would', async () => {
    await client.query(`
      CREATE TABLE public.big (id bigint PRIMARY KEY, v integer, at timestamptz);
      INSERT INTO public.big SELECT g, g, timestamptz '2026-01-01' + g * interval '1 s'
        FROM generate_series(1, 100000) g;
      CREATE TABLE public.big_delta (LIKE public.big);
      INSERT INTO public.big_delta SELECT id, v + 1, at + interval '1 day' FROM public.big WHERE id % 100 = 0;
      INSERT INTO public.big_delta VALUES (100001, 0, timestamptz '2027-01-01');
      ANALYZE public.big; ANALYZE public.big_delta;`);
    // Live scans during the statement (the backend's pending counts: a difference within one
    // transaction is that transaction's).
    const seqScansOf = async (statement: string) => {
      const count = `SELECT seq_scan::int AS n, idx_scan::int AS lookups FROM pg_stat_xact_user_tables WHERE relid = 'public.big'::regclass`;
      await client.query('BEGIN');
      try {
        // A 2 M-row live table makes the planner hash the delta and scan live (bench/incremental.ts);
        // at this test's size, key lookups costed as very dear random reads do the same.
        await client.query('SET LOCAL random_page_cost = 1000');
        const [before] = (await client.query(count)).rows;
        const { rows } = await client.query(statement);
        const [after] = (await client.query(count)).rows;
        const settings = await client.query(
          `SELECT current_setting('enable_hashjoin') AS hash, current_setting('enable_mergejoin') AS merge`,
        );
        return {
          scans: after.n - before.n,
          lookups: after.lookups - before.lookups,
          result: rows[0]?.result,
          settings: settings.rows[0],
        };
      } finally {
        await client.query('ROLLBACK');
      }
    };
    // The planner left to itself scans live for this delta: the case this is about.
    const plain =
      await seqScansOf(`UPDATE ONLY public.big AS l SET v = s.v, at = s.at FROM public.big_delta AS s
       WHERE l.id = s.id AND (l.v IS DISTINCT FROM s.v OR l.at IS DISTINCT FROM s.at)`);
    expect(plain.scans).toBe(1);
    const merged = await seqScansOf(
      `SELECT redshift_sync.publish_increment('public.big', 'public.big_delta', ARRAY['id'], 'merge', NULL) AS result`,
    );
    expect(merged).toEqual({
      scans: 0,
      // One lookup per delta row by UPDATE; INSERT looks up only the row UPDATE did not write.
      lookups: 1001 + 1,
      result: { inserted: 1, updated: 1000, deleted: 0 },
      // Set back for the rest of the swap's transaction (the proof, the watermark).
      settings: { hash: 'on', merge: 'on' },
    });
  });
});

describe('the swap of an increment whose live table was dropped since it was planned', () => {
  it('refuses with RS002 instead of making the delta the table, and writes no watermark', async () => {
    await client.query(`CREATE TABLE public.gone_delta (id int PRIMARY KEY, v text);
      INSERT INTO public.gone_delta VALUES (7, 'only the change')`);
    const plan = {
      runId: 'run-live-gone',
      lockTimeoutMs: 1000,
      tables: [
        {
          live: { schema: 'public', name: 'gone' },
          staging: { schema: 'public', name: 'gone_delta' },
          strategy: 'rename',
          liveLock: 'RowExclusiveLock',
          stagingLock: 'AccessExclusiveLock',
          viewLock: null,
          liveSequenceLock: null,
          stagingSequenceLock: 'AccessExclusiveLock',
          primaryKey: ['id'],
          increment: { mode: 'merge', proof: { columns: [], figures: { row_count: '1' } } },
          watermark: { cursor: 'id', cursorKind: 'integer', value: '7' },
        },
      ],
    };
    await expect(
      client.query('SELECT redshift_sync.swap($1::jsonb)', [JSON.stringify(plan)]),
    ).rejects.toMatchObject({
      code: 'RS002',
      message: expect.stringMatching(
        /^the increment of "public"\."gone" was not applied: the live table no longer exists/,
      ),
    });
    const { rows } = await client.query(
      `SELECT to_regclass('public.gone') IS NULL AS gone, to_regclass('public.gone_delta') IS NOT NULL AS staged,
              (SELECT count(*)::int FROM redshift_sync.watermarks WHERE target_table = 'gone') AS watermarks`,
    );
    expect(rows).toEqual([{ gone: true, staged: true, watermarks: 0 }]);
  });
});

describe('the INSERT of a merged increment', () => {
  it('leaves out the updated rows through "= ANY", which PostgreSQL 14 hashes, not "<> ALL"', async () => {
    // 14 reads the whole array for every row of "<> ALL" (NOT of "= ANY" becomes that): 1.1 s
    // for a 20,000-row increment, against 7 ms hashed. auto_explain shows the nested INSERT's
    // filter (LOAD needs a superuser: the admin session).
    const admin = await db.connect('test setup');
    const plans: string[] = [];
    admin.on('notice', (notice) => plans.push(notice.message ?? ''));
    try {
      await admin.query('BEGIN');
      await admin.query(`LOAD 'auto_explain';
        SET LOCAL auto_explain.log_min_duration = 0; SET LOCAL auto_explain.log_nested_statements = on;
        SET LOCAL auto_explain.log_level = notice`);
      await admin.query(
        `SELECT redshift_sync.publish_increment('public.big', 'public.big_delta', ARRAY['id'], 'merge', NULL)`,
      );
      const insert = plans.find((plan) => plan.includes('Query Text: INSERT INTO public.big'));
      // The positions arrive as a constant (hashing needs one), the test kept as written.
      expect(insert).toMatch(/Filter: \(\(ctid = ANY \('\{[\s\S]*\}'::tid\[\]\)\) IS NOT TRUE\)/);
      expect(insert).not.toContain('<> ALL');
    } finally {
      await admin.query('ROLLBACK').catch(() => {});
      await admin.end();
    }
  });
});

describe('redshift_sync.publish_pair for an increment', () => {
  it('names the function that exists, publish_increment, not a publish_by_increment', async () => {
    await expect(
      client.query(`SELECT * FROM redshift_sync.publish_pair('increment', NULL, 'public.live')`),
    ).rejects.toMatchObject({
      code: 'RS112',
      message:
        'redshift_sync.publish_increment needs a live and a staging table (got live NULL, staging public.live)',
    });
    // The other strategies keep their functions' names.
    await expect(
      client.query(`SELECT * FROM redshift_sync.publish_pair('truncate', 'public.live', NULL)`),
    ).rejects.toMatchObject({
      message: expect.stringMatching(/^redshift_sync\.publish_by_truncate needs a live/),
    });
  });

  it('refuses an appended increment whose staging columns differ, naming the columns', async () => {
    await client.query(
      `DROP TABLE IF EXISTS public.delta; CREATE TABLE public.delta (id int, v text, extra int)`,
    );
    const error = await client
      .query(
        `SELECT redshift_sync.publish_increment('public.live', 'public.delta', ARRAY['id'], 'append', NULL)`,
      )
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'RS110',
      message:
        'cannot publish public.delta into public.live: the staging table has column(s) extra that the live table lacks, so their data would be lost. Add them to the live table or leave them out of staging.',
    });
    expect((error as Error).message).not.toContain('publish_by_');
  });
});

describe('installing the incremental sync over the version before it', () => {
  it('upgrades over live data: runs gains its columns, rows kept; watermarks created', async () => {
    const fresh = await freshDatabase();
    const pipeline = await fresh.connect('redshift-aurora-sync', fresh.pipelineLogin);
    const sql = new PgSqlClient(pipeline);
    const [runsTable] = RUN_RECORDS_SQL;
    // Version N: runs as it was created before, no watermarks, migration 1 only.
    const before = runsTable!.replace(/\n\s+mode text,[\s\S]*?rows_deleted bigint,/, '');
    expect(before).not.toContain('watermark_before');
    const versionN: SchemaArtifact = {
      objects: (await import('../lambdas/core/schema/install')).SCHEMA_OBJECTS.map((statement) =>
        statement === runsTable ? before : statement,
      ).filter((statement) => !WATERMARKS_SQL.includes(statement)),
      migrations: MIGRATIONS.filter((migration) => migration.number === 1),
      version: 'before-incremental',
    };
    await installSchema(sql, versionN);
    await pipeline.query(
      `INSERT INTO redshift_sync.runs (run_id, target_schema, target_table, environment, strategy, status, started_at)
       VALUES ('run-1', 'public', 'orders', 'prod', 'rename', 'swapped', now())`,
    );
    const upgrade = await installSchema(sql);
    // Every migration after 1, once: 2 is the incremental sync's, later ones come after it.
    expect(upgrade.migrationsApplied).toEqual(
      MIGRATIONS.map((migration) => migration.number).filter((number) => number > 1),
    );
    expect(upgrade.migrationsApplied).toContain(2);
    const { rows } = await pipeline.query(
      'SELECT run_id, mode, watermark_before, rows_inserted FROM redshift_sync.runs',
    );
    expect(rows).toEqual([
      { run_id: 'run-1', mode: null, watermark_before: null, rows_inserted: null },
    ]);
    const { rows: watermarks } = await pipeline.query('SELECT * FROM redshift_sync.watermarks');
    expect(watermarks).toEqual([]);
  });
});
