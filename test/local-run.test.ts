/**
 * The whole pipeline, locally: the synthesized state machine executed by
 * aws-local-stepfunctions, every Task bound to the real step code, a PostgreSQL source
 * standing in for Redshift (UNLOAD emulated) and a PostgreSQL target standing in for Aurora
 * (aws_s3 shim). The pipeline runs as the non-superuser role it has on Aurora; a superuser
 * connection only installs the aws_s3 stand-in and sets up what users built.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import type { DryRunSummary } from '../lambdas/pipeline/steps/prepare';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { LOCAL_BUCKET, localDeps } from '../local/run/deps';
import { LocalRunRegistry } from '../local/run/run-registry';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { runLocally } from './support/local-pipeline';
import { uniqueRoles } from './support/swap-fixtures';

let ground: DatabasesAndBucket;
const roles = uniqueRoles('analyst');

const CONFIG = {
  tables: [
    { source: 'sales.orders', target: 'public.orders', strategy: 'rename' },
    { source: 'sales."Order Lines"', target: 'public."Order Lines"', strategy: 'merge' },
  ],
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
};

beforeAll(async () => {
  ground = await databasesAndBucket('local-run-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint, customer text, amount numeric(38,10), note varchar(70000),
                               flag boolean, placed timestamptz, ratio double precision);
    INSERT INTO sales.orders VALUES
      (1, 'ann', 1.5, NULL, true, '2026-01-01 10:00:00+00', 1.7976931348623157e308),
      (2, 'bob', -99999999999999999999999999.9999999999, '', false, '2026-01-02 00:00:00.123456+00', 5e-324),
      (3, 'c|d', 0, E'\\\\N', NULL, NULL, 0.1),
      (4, 'e', 1, 'NULL', true, '1970-01-01 00:00:00+00', -0.0),
      (5, 'f', 2, E'tab\\there\\r\\nnew line \\\\ back', false, '2262-04-11 23:47:16+00', 1e-10),
      (6, 'g', 3, repeat('x', 65536), true, '2026-06-01 12:00:00+00', 3.141592653589793),
      (7, 'h', 4, 'Grüße 🎉 "quoted" ''single''', true, '2026-06-01 12:00:00+00', NULL);
    CREATE TABLE sales."Order Lines" (order_id bigint, line integer, sku text, PRIMARY KEY (order_id, line));
    INSERT INTO sales."Order Lines" SELECT g, 1, 'sku-' || g FROM generate_series(1, 7) g;
  `);
  await ground.target.query(`
    CREATE ROLE ${roles.analyst} NOLOGIN;
    CREATE TABLE public.orders (id bigint, customer text, amount numeric(38,10), note varchar(70000),
                                flag boolean, placed timestamptz, ratio double precision);
    INSERT INTO public.orders (id, customer) VALUES (100, 'old');
    COMMENT ON TABLE public.orders IS 'refreshed daily';
    CREATE VIEW public.customers AS SELECT DISTINCT customer FROM public.orders;
    GRANT SELECT ON public.customers TO ${roles.analyst};
    CREATE TABLE public."Order Lines" (order_id bigint, line integer, sku text, PRIMARY KEY (order_id, line));
    INSERT INTO public."Order Lines" VALUES (1, 1, 'old'), (99, 1, 'gone');
  `);
  // What users built belongs to a user role; the pipeline acts as it.
  await ground.target.query(`
    ALTER TABLE public.orders OWNER TO ${ground.owner};
    ALTER VIEW public.customers OWNER TO ${ground.owner};
    ALTER TABLE public."Order Lines" OWNER TO ${ground.owner};
  `);
});

async function run<Summary = RunSummary>(
  request: Record<string, unknown> = {},
  config: unknown = CONFIG,
): Promise<{ summary: Summary; progress: string[] }> {
  const progress: string[] = [];
  const summary = await runLocally<Summary>({
    ...ground.runOn,
    config,
    request,
    onProgress: (line) => progress.push(line),
  });
  return { summary, progress };
}

describe('a local run', () => {
  it('syncs every table through the state machine, value for value, keeping views and grants', async () => {
    const { summary, progress } = await run();
    expect(summary.error).toBeNull();
    expect(summary.status).toBe('SUCCEEDED');
    expect(summary.tables.map((table) => [table.target, table.status, table.rows])).toEqual([
      ['public.orders', 'swapped', 7],
      ['public."Order Lines"', 'swapped', 7],
    ]);
    expect(progress).toEqual(
      expect.arrayContaining([
        'Prepare the run',
        'Unload the tables from Redshift',
        'Load each table',
        'Check locks on the live tables',
        'Swap staging into live',
        'Record the run and clean up',
      ]),
    );
    // Every value, compared on its own type in one database (the source's rows copied over).
    await ground.target.query('CREATE TEMP TABLE expected (LIKE public.orders)');
    // As text, so no JavaScript type (Date, number) rounds anything on the way.
    const { rows } = await ground.source.query({
      text: 'SELECT * FROM sales.orders',
      types: { getTypeParser: () => (value: string) => value },
    });
    for (const row of rows) {
      await ground.target.query(
        'INSERT INTO expected VALUES ($1, $2, $3, $4, $5, $6, $7)',
        Object.values(row),
      );
    }
    const differences = await ground.target.query(`
      SELECT e.id FROM expected e FULL JOIN public.orders o ON o.id = e.id
      WHERE (e.*) IS DISTINCT FROM (o.*)`);
    expect(differences.rows).toEqual([]);
    const merged = await ground.target.query(
      'SELECT order_id, sku FROM public."Order Lines" ORDER BY order_id',
    );
    expect(merged.rows).toHaveLength(7);
    expect(merged.rows[0]).toEqual({ order_id: '1', sku: 'sku-1' });
    const kept = await ground.target.query(`SELECT
      has_table_privilege('${roles.analyst}', 'public.customers', 'SELECT') AS granted,
      obj_description('public.orders'::regclass, 'pg_class') AS comment,
      (SELECT count(*)::int FROM public.customers) AS customers`);
    expect(kept.rows[0]).toEqual({ granted: true, comment: 'refreshed daily', customers: 7 });
    // The pipeline's own schema was installed, and the new versions created, by its own role.
    const owners = await ground.target.query(`SELECT
      (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'redshift_sync') AS schema,
      (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.orders'::regclass) AS orders`);
    expect(owners.rows[0]).toEqual({
      schema: ground.targetDb.pipelineLogin.user,
      orders: ground.owner,
    });
    const recorded = await ground.target.query(
      `SELECT target_table, status, rows::int FROM redshift_sync.runs WHERE run_id = $1 ORDER BY 1`,
      [summary.runId],
    );
    expect(recorded.rows).toEqual([
      { target_table: 'Order Lines', status: 'swapped', rows: 7 },
      { target_table: 'orders', status: 'swapped', rows: 7 },
    ]);
    // Clean-up: no staging tables, no run files left behind.
    const staging = await ground.target.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'redshift_sync_staging'`,
    );
    expect(staging.rows[0].n).toBe(0);
    const left = await readdir(join(ground.s3Dir, LOCAL_BUCKET, 'runs'), {
      recursive: true,
      withFileTypes: true,
    });
    expect(left.filter((entry) => entry.isFile())).toEqual([]);
  });

  it('waits for a long reader, names it in the summary, and swaps once it is gone', async () => {
    const reader = await ground.targetDb.connect('nightly report');
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM public.orders');
    const released = new Promise((resolve) => setTimeout(resolve, 4000)).then(() =>
      reader.query('COMMIT'),
    );
    const { summary, progress } = await run({ tables: ['public.orders'] });
    await released;
    expect(summary.status).toBe('SUCCEEDED');
    const [orders] = summary.tables;
    expect(orders!.waitedSeconds).toBeGreaterThan(0.5);
    expect(orders!.blockers).toEqual([
      expect.objectContaining({ application: 'nightly report', relation: 'public.orders' }),
    ]);
    expect(progress.join('\n')).toMatch(
      /waited \d+ s for locks; blocked by:\n\s+- .*nightly report/,
    );
  });

  it('refuses a table that is not configured, by name, before anything runs', async () => {
    const { summary } = await run({ tables: ['public.nope'] });
    expect(summary.status).toBe('FAILED');
    expect(summary.error?.name).toBe('ConfigError');
    expect(summary.error?.message).toContain('public.nope');
    expect(summary.error?.message).toContain('public.orders');
    expect(summary.tables).toEqual([]);
  });

  it('fails the run when the source is empty, keeping the live table as it was', async () => {
    await ground.source.query('CREATE TABLE sales.empty (LIKE sales.orders)');
    await ground.target.query(`CREATE TABLE public.kept AS SELECT * FROM public.orders;
      ALTER TABLE public.kept OWNER TO ${ground.owner}`);
    const before = await ground.target.query('SELECT count(*)::int AS n FROM public.kept');
    const { summary } = await run(
      {},
      { ...CONFIG, tables: [{ source: 'sales.empty', target: 'public.kept', strategy: 'rename' }] },
    );
    expect(summary.status).toBe('FAILED');
    expect(summary.error?.name).toBe('QualityGateError');
    expect(summary.error?.message).toMatch(/allowEmpty/);
    expect(summary.tables).toEqual([
      expect.objectContaining({ target: 'public.kept', status: 'failed' }),
    ]);
    const after = await ground.target.query('SELECT count(*)::int AS n FROM public.kept');
    expect(after.rows[0].n).toBe(before.rows[0].n);
    const staging = await ground.target.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'redshift_sync_staging'`,
    );
    expect(staging.rows[0].n).toBe(0);
  });

  it('describes a dry run: the locks each table needs, who holds them now, of what class, and what onMaxWait would do', async () => {
    const reader = await ground.targetDb.connect('open transaction');
    await reader.query('BEGIN');
    await reader.query('SELECT 1 FROM public.orders LIMIT 1');
    const report = await ground.targetDb.connect('running report');
    const running = report
      .query('SELECT pg_sleep(30) FROM public.orders LIMIT 1')
      .catch((error: Error) => error);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    try {
      const { summary } = await run<DryRunSummary>(
        { dryRun: true },
        {
          ...CONFIG,
          locks: {
            ...CONFIG.locks,
            onMaxWait: { idleInTransaction: 'terminate', activeQuery: 'fail' },
          },
        },
      );
      expect(summary.status).toBe('DRY_RUN');
      expect(summary.wouldWait).toBe(true);
      const orders = summary.tables.find((table) => table.target === 'public.orders')!;
      expect(orders.locks[0]).toEqual({ relation: 'public.orders', mode: 'AccessExclusiveLock' });
      const byApplication = (application: string) =>
        orders.blockers.find((blocker) => blocker.application === application);
      expect(orders.blockers).toHaveLength(2);
      expect(byApplication('open transaction')).toMatchObject({
        mode: 'AccessShareLock',
        blockerClass: 'idleInTransaction',
        atMaxWait: 'terminate',
        reason: expect.stringMatching(/^idleInTransaction: pid \d+ /),
      });
      expect(byApplication('running report')).toMatchObject({
        blockerClass: 'activeQuery',
        atMaxWait: 'fail',
        reason: expect.stringMatching(/^activeQuery: pid \d+ /),
      });
      const lines = summary.tables.find((table) => table.target === 'public."Order Lines"')!;
      expect(lines.locks[0]!.mode).toBe('RowExclusiveLock');
      expect(lines.blockers).toEqual([]);
    } finally {
      await reader.query('COMMIT');
      await ground.target.query(
        `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'running report'`,
      );
      await running;
    }
  });

  it('rolls a table back to the version the last run replaced, with its view and grant', async () => {
    await ground.target.query(
      `INSERT INTO public.orders (id, customer) VALUES (999, 'before the run')`,
    );
    const { summary } = await run({ tables: ['public.orders'] });
    expect(summary.status).toBe('SUCCEEDED');
    const marker = 'SELECT count(*)::int AS n FROM public.customers WHERE customer = $1';
    expect((await ground.target.query(marker, ['before the run'])).rows[0].n).toBe(0);

    const rolledBack = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'ops/rollback-cli.ts',
        '--table',
        'public.orders',
        '--target-url',
        ground.targetDb.pipelineUrl,
      ],
      { encoding: 'utf8' },
    );
    expect(rolledBack.status, rolledBack.stderr).toBe(0);
    expect(rolledBack.stdout).toMatch(/public\.orders is back at its previous version/);
    expect((await ground.target.query(marker, ['before the run'])).rows[0].n).toBe(1);
    const granted = await ground.target.query(
      `SELECT has_table_privilege('${roles.analyst}', 'public.customers', 'SELECT') AS granted`,
    );
    expect(granted.rows[0].granted).toBe(true);
  });

  it('refuses to start while another run of the environment is in progress, leaving its work alone', async () => {
    const others = new LocalRunRegistry(ground.s3Dir);
    // Another run, alive (this very process) and holding the lease.
    await others.register('earlier-run', Date.now() - 60_000);
    await ground.target.query(
      `INSERT INTO redshift_sync.run_lease (environment, run_id, execution_arn)
       VALUES ('local', 'earlier-run', 'arn:aws:states:us-east-1:000000000000:execution:local:earlier-run')`,
    );
    await ground.target.query('CREATE TABLE redshift_sync_staging.earlier_runs_table (id int)');
    try {
      const { summary } = await run();
      expect(summary.status).toBe('NOT_STARTED');
      expect(summary.error?.name).toBe('RunInProgress');
      expect(summary.error?.message).toContain('earlier-run');
      const { rows } = await ground.target.query(
        `SELECT to_regclass('redshift_sync_staging.earlier_runs_table') IS NOT NULL AS kept`,
      );
      expect(rows[0].kept).toBe(true);
    } finally {
      await others.unregister('earlier-run');
      await ground.target.query('DROP TABLE redshift_sync_staging.earlier_runs_table');
    }
    // Once that run has ended (its process gone, its record cleared), its lease is taken over.
    const { summary } = await run();
    expect(summary.status).toBe('SUCCEEDED');
    const { rows } = await ground.target.query(
      'SELECT count(*)::int AS n FROM redshift_sync.run_lease',
    );
    expect(rows[0].n).toBe(0);
  });

  it('names LOCAL_S3_DIR when it cannot be a folder', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'local-run-not-a-folder-')), 'file');
    await writeFile(file, 'x');
    await expect(
      localDeps({
        sourceUrl: ground.sourceDb.url,
        targetUrl: ground.targetDb.url,
        s3Dir: file,
        onLog: () => {},
      }),
    ).rejects.toThrow(
      `LOCAL_S3_DIR=${file} cannot be the bucket's folder (EEXIST: file already exists, mkdir '${file}'); set it to a folder this user may create or write.`,
    );
  });

  it('says in one line to set TARGET_ADMIN_URL when the pipeline role cannot install the stand-ins', async () => {
    const refused = localDeps({
      sourceUrl: ground.sourceDb.url,
      targetUrl: ground.targetDb.pipelineUrl,
      s3Dir: ground.s3Dir,
      onLog: () => {},
    });
    await expect(refused).rejects.toThrow(ConfigError);
    await expect(refused).rejects.toThrow(
      new RegExp(
        `^TARGET_DATABASE_URL's role ${ground.targetDb.pipelineLogin.user} is not a superuser, so it cannot install the local stand-in for aws_s3; set TARGET_ADMIN_URL [^\\n]+$`,
      ),
    );
  });
});
