/**
 * prepareStaging when the transport cuts calls off, as the RDS Data API does after 45 s: the
 * index builds and ANALYZE it sends as long-running keep going in PostgreSQL, and it follows
 * them there to their end. The cut-off is simulated on real PostgreSQL: each call runs on a
 * connection of its own, and a call still running after a few hundred milliseconds fails with
 * DataApiTimeoutError while its statement goes on (or is cancelled, for a call that is not
 * long-running, as the Data API cancels it). A lock held by another session keeps each
 * statement waiting until after its cut-off.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { InternalError } from '../lambdas/core/errors';
import { installSchema } from '../lambdas/core/schema/install';
import { prepareStaging } from '../lambdas/core/swap/engine';
import {
  AnalyzeStoppedError,
  describeBackends,
  IndexBuildStoppedError,
  LongStatementStillRunningError,
  startWaitBudget,
} from '../lambdas/core/swap/long-statements';
import { CutOffSqlClient, holdLock, until } from './support/data-api-cutoff';
import { freshDatabase, type TestDatabase } from './support/db';

const CUT_OFF_MS = 300;

let db: TestDatabase;
let sql: PgSqlClient;
let pool: pg.Pool;
let cutOffClient: CutOffSqlClient;
const sleeps: number[] = [];

/** Waits for real, but keeps a record: each wait is a check that found the statement running. */
const options = {
  pollIntervalMs: 50,
  sleep: async (ms: number) => {
    sleeps.push(ms);
    await new Promise((resolve) => setTimeout(resolve, ms));
  },
};

beforeAll(async () => {
  db = await freshDatabase();
  sql = new PgSqlClient(await db.connect('setup'));
  pool = new pg.Pool({ connectionString: db.url, application_name: 'cut-off client', max: 10 });
  cutOffClient = new CutOffSqlClient(pool, CUT_OFF_MS);
  await installSchema(sql);
});

afterAll(async () => {
  await cutOffClient?.settle();
  await pool?.end();
});

/** A live table with the given indexes, and a staging copy of its rows (with `extraSql` applied). */
async function liveAndStaging(name: string, indexesSql: readonly string[], extraSql = '') {
  await sql.query(`CREATE TABLE public.${name} (id int NOT NULL, code text, region text)`);
  await sql.query(
    `INSERT INTO public.${name} SELECT g, 'c' || g, 'r' || (g % 7) FROM generate_series(1, 20000) g`,
  );
  for (const statement of indexesSql) await sql.query(statement);
  await sql.query(
    `CREATE TABLE redshift_sync_staging.${name} AS SELECT * FROM public.${name} ${extraSql}`,
  );
  return {
    live: { schema: 'public', name },
    staging: { schema: 'redshift_sync_staging', name },
    stagingSql: `redshift_sync_staging.${name}`,
  };
}

async function stagingIndexes(name: string) {
  return sql.query<{ name: string; valid: boolean; primary: boolean }>(
    `SELECT c.relname AS name, i.indisvalid AS valid, i.indisprimary AS primary
     FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid = format('redshift_sync_staging.%I', :name::text)::regclass
     ORDER BY 1`,
    { name },
  );
}

async function analyzeCount(name: string): Promise<number> {
  const [row] = await sql.query<{ n: number }>(
    `SELECT analyze_count::int AS n FROM pg_stat_all_tables
     WHERE relid = format('redshift_sync_staging.%I', :name::text)::regclass`,
    { name },
  );
  return row!.n;
}

/** The pid of the backend running a statement, found by its text. */
async function runningBackend(textLike: string): Promise<number | undefined> {
  const [row] = await sql.query<{ pid: number }>(
    `SELECT pid FROM pg_stat_activity
     WHERE state = 'active' AND query LIKE :textLike AND pid <> pg_backend_pid()`,
    { textLike },
  );
  return row?.pid;
}

describe('staging_index_builds', () => {
  it('names the index each statement creates, and none for the statements that drop', async () => {
    const { stagingSql } = await liveAndStaging('named', [
      'ALTER TABLE public.named ADD PRIMARY KEY (id)',
      'CREATE INDEX named_region ON public.named (region)',
    ]);
    await sql.query(`CREATE INDEX stray ON ${stagingSql} (code)`);
    const rows = await sql.query<{ statement: string; indexName: string | null }>(
      `SELECT statement, index_name AS "indexName"
       FROM redshift_sync.staging_index_builds('public.named'::regclass, 'redshift_sync_staging.named'::regclass)`,
    );
    expect(rows).toEqual([
      { statement: 'DROP INDEX redshift_sync_staging.stray', indexName: null },
      {
        statement:
          'ALTER TABLE redshift_sync_staging.named ADD CONSTRAINT named_i1 PRIMARY KEY (id)',
        indexName: 'named_i1',
      },
      {
        statement: 'CREATE INDEX named_i2 ON redshift_sync_staging.named USING btree (region)',
        indexName: 'named_i2',
      },
    ]);
  });
});

describe('prepareStaging over a transport that cuts calls off', () => {
  it('follows cut-off index builds to their end and leaves every index valid', async () => {
    const table = await liveAndStaging('orders', [
      'ALTER TABLE public.orders ADD PRIMARY KEY (id)',
      'CREATE UNIQUE INDEX orders_code ON public.orders (code)',
      'CREATE INDEX orders_region ON public.orders (region)',
    ]);
    const lock = await holdLock(db, table.stagingSql, 'ROW EXCLUSIVE');
    sleeps.length = 0;
    cutOffClient.cutOffs.length = 0;
    const preparing = prepareStaging(cutOffClient, table, options);
    // Released only once prepareStaging has seen the cut-off build still running and waited for
    // it: the build finishes in the database, long after its call failed.
    await until(() => sleeps.length > 0, 'prepareStaging waits for the cut-off build');
    await lock.release();
    const { statements } = await preparing;

    expect(cutOffClient.cutOffs).toEqual([{ sql: expect.any(String), longRunning: true }]);
    expect(statements).toHaveLength(3);
    expect(statements).toContain(cutOffClient.cutOffs[0]!.sql);
    expect(await stagingIndexes('orders')).toEqual([
      { name: 'orders_i1', valid: true, primary: false },
      { name: 'orders_i2', valid: true, primary: true },
      { name: 'orders_i3', valid: true, primary: false },
    ]);
    const [left] = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM redshift_sync.staging_index_builds('public.orders'::regclass, 'redshift_sync_staging.orders'::regclass)`,
    );
    expect(left!.n).toBe(0);
  });

  it('follows a build that is simply longer than the cut-off', async () => {
    // 600 000 rows take about 0.5 s to index here, with no lock in the way; calls are cut off
    // after 150 ms.
    await sql.query('CREATE TABLE public.wide (id int NOT NULL, digest text)');
    await sql.query(
      'INSERT INTO public.wide SELECT g, md5(g::text) FROM generate_series(1, 600000) g',
    );
    await sql.query('CREATE INDEX wide_digest ON public.wide (digest, id)');
    await sql.query('CREATE TABLE redshift_sync_staging.wide AS SELECT * FROM public.wide');
    const table = {
      live: { schema: 'public', name: 'wide' },
      staging: { schema: 'redshift_sync_staging', name: 'wide' },
    };
    const quickCutOff = new CutOffSqlClient(pool, 150);
    sleeps.length = 0;
    await prepareStaging(quickCutOff, table, options);

    expect(quickCutOff.cutOffs).toContainEqual({
      sql: 'CREATE INDEX wide_i1 ON redshift_sync_staging.wide USING btree (digest, id)',
      longRunning: true,
    });
    expect(quickCutOff.cutOffs.every((cutOff) => cutOff.longRunning)).toBe(true);
    expect(sleeps.length).toBeGreaterThan(0);
    expect(await stagingIndexes('wide')).toEqual([
      { name: 'wide_i1', valid: true, primary: false },
    ]);
  });

  it('names an index whose build failed in the database after the cut-off', async () => {
    // Staging holds a duplicate code, so the unique index cannot be built on it.
    const table = await liveAndStaging(
      'dupes',
      ['CREATE UNIQUE INDEX dupes_code ON public.dupes (code)'],
      "UNION ALL SELECT 0, 'c1', 'r0'",
    );
    const lock = await holdLock(db, table.stagingSql, 'ROW EXCLUSIVE');
    sleeps.length = 0;
    cutOffClient.cutOffs.length = 0;
    const preparing = prepareStaging(cutOffClient, table, options).catch((e: unknown) => e);
    await until(() => sleeps.length > 0, 'prepareStaging waits for the cut-off build');
    await lock.release();
    const error = await preparing;

    expect(error).toBeInstanceOf(IndexBuildStoppedError);
    expect(error).toMatchObject({
      name: 'IndexBuildStoppedError',
      indexName: 'dupes_i1',
      staging: table.staging,
      statement: 'CREATE UNIQUE INDEX dupes_i1 ON redshift_sync_staging.dupes USING btree (code)',
    });
    expect((error as Error).message).toMatch(
      /^redshift_sync_staging\.dupes: the build of index dupes_i1 stopped before it finished\. .* without creating the index: it failed or was cancelled.* restart the run/,
    );
    expect(await stagingIndexes('dupes')).toEqual([]);
  });

  it('follows a cut-off ANALYZE to its end and sees its statistics counted', async () => {
    const table = await liveAndStaging('events', []);
    const before = await analyzeCount('events');
    // SHARE conflicts with ANALYZE's SHARE UPDATE EXCLUSIVE (and is not a mode ANALYZE takes).
    const lock = await holdLock(db, table.stagingSql, 'SHARE');
    sleeps.length = 0;
    cutOffClient.cutOffs.length = 0;
    const preparing = prepareStaging(cutOffClient, table, options);
    await until(() => sleeps.length > 0, 'prepareStaging waits for the cut-off ANALYZE');
    await lock.release();
    await preparing;

    expect(cutOffClient.cutOffs).toEqual([
      { sql: expect.stringContaining('redshift_sync.analyze_table('), longRunning: true },
    ]);
    // The cumulative statistics count it too (late before PostgreSQL 15: the stats collector).
    await until(async () => (await analyzeCount('events')) === before + 1, 'analyze_count moves');
    const [stats] = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'redshift_sync_staging' AND tablename = 'events'`,
    );
    expect(stats!.n).toBe(3);
  });

  it('reports an ANALYZE that was cancelled in the database after the cut-off', async () => {
    const table = await liveAndStaging('visits', []);
    const lock = await holdLock(db, table.stagingSql, 'SHARE');
    sleeps.length = 0;
    cutOffClient.cutOffs.length = 0;
    const preparing = prepareStaging(cutOffClient, table, options).catch((e: unknown) => e);
    await until(() => sleeps.length > 0, 'prepareStaging waits for the cut-off ANALYZE');
    const pid = await runningBackend('%analyze_table%');
    expect(pid).toBeDefined();
    await sql.query('SELECT pg_cancel_backend(:pid)', { pid: pid! });
    const error = await preparing;
    await lock.release();

    expect(error).toBeInstanceOf(AnalyzeStoppedError);
    expect((error as Error).message).toMatch(
      /^redshift_sync_staging\.visits: ANALYZE stopped before it finished\. .*without recording statistics.*restart the run/,
    );
  });

  it('stops waiting at its bound and names the backend still building', async () => {
    // 1.5 s, not 1 s: a lock wait briefly leaves its wait event when deadlock_timeout (1 s) fires.
    const table = await liveAndStaging('slow', [
      'CREATE INDEX slow_region ON public.slow (region)',
    ]);
    const lock = await holdLock(db, table.stagingSql, 'ROW EXCLUSIVE');
    cutOffClient.cutOffs.length = 0;
    const startedAt = Date.now();
    const error = await prepareStaging(cutOffClient, table, { ...options, maxWaitMs: 1_500 }).catch(
      (e: unknown) => e,
    );
    const tookMs = Date.now() - startedAt;
    const pid = await runningBackend('CREATE INDEX slow_i1 %');
    await lock.release();
    await cutOffClient.settle();

    expect(error).toBeInstanceOf(LongStatementStillRunningError);
    expect(tookMs).toBeGreaterThanOrEqual(1_500);
    expect(tookMs).toBeLessThan(1_500 + CUT_OFF_MS + 1_000);
    expect((error as LongStatementStillRunningError).backends.map((b) => b.pid)).toEqual([pid]);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^redshift_sync_staging\\.slow: the build of index slow_i1 is still running in the database at the end of prepareStaging's bounded wait \\(maxWaitMs, 1\\.5 s\\): pid ${pid} \\(for \\d+ s, waiting for a lock\\): CREATE INDEX slow_i1 ON redshift_sync_staging\\.slow USING btree \\(region\\)\\. It goes on`,
      ),
    );
    // The build went on after prepareStaging gave up, and finished once the lock was released.
    expect(await stagingIndexes('slow')).toEqual([
      { name: 'slow_i1', valid: true, primary: false },
    ]);
  });
});

describe('the wait budget', () => {
  it('refuses a bound or poll interval that makes no sense', () => {
    expect(() => startWaitBudget({ maxWaitMs: -1 })).toThrow(InternalError);
    expect(() => startWaitBudget({ pollIntervalMs: 0 })).toThrow(/pollIntervalMs is 0/);
    expect(startWaitBudget({ now: () => 1_000 })).toMatchObject({
      deadline: 1_000 + 14 * 60_000,
      pollIntervalMs: 5_000,
    });
  });

  it('describes a running backend for a person deciding whether to wait', () => {
    expect(
      describeBackends([
        {
          pid: 42,
          seconds: 610,
          phase: 'building index: sorting live tuples',
          waitEventType: null,
          query: 'CREATE INDEX t_i1 ON s.t USING btree (a)',
        },
      ]),
    ).toBe(
      'pid 42 (for 610 s, phase "building index: sorting live tuples"): CREATE INDEX t_i1 ON s.t USING btree (a)',
    );
  });
});
