/**
 * `npm start`: the whole product on a laptop. Starts an embedded PostgreSQL with two
 * databases (one standing in for Redshift, one for Aurora), creates a demo source and a live
 * target that a user has built a view on and granted to an analyst, holds a dashboard's
 * long read on the live table so the lock wait is visible, runs the pipeline's state machine,
 * and shows that the view, its grant and the table's comment survived the swap. The pipeline
 * runs as a non-superuser role, as on Aurora; the embedded server's superuser stands in for
 * Aurora's master user (rds_superuser): it creates that role and installs aws_s3's stand-in.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseRuntimeConfig } from '../../lambdas/core/config';
import { ConfigError } from '../../lambdas/core/errors';
import { provisionPipelineRole, urlAs } from '../pipeline-role';
import { startLocalPostgres } from '../postgres';
import { localDeps } from './deps';
import { runLocalPipeline } from './pipeline';

/** How long the demo dashboard holds its read: long enough to see the pipeline wait for it. */
const READER_SECONDS = 6;

/** The pipeline's database role, as created on Aurora by the README's grants. */
const PIPELINE_LOGIN = { user: 'sync_pipeline', password: 'demo only' };

const SOURCE_SQL = [
  'CREATE SCHEMA sales',
  `CREATE TABLE sales.orders (
     id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2),
     status varchar(20), note varchar(1000), ordered_at timestamptz NOT NULL)`,
  `INSERT INTO sales.orders
   SELECT g, 1 + g % 500, round((g % 997) * 1.37, 2),
          (ARRAY['open','shipped','returned'])[1 + g % 3],
          CASE g % 7 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'two\\nlines | a pipe'
                     WHEN 3 THEN E'back\\\\slash \\\\N' ELSE 'plain ✓' END,
          timestamptz '2026-01-01 00:00:00+00' + g * interval '7 minutes'
   FROM generate_series(1, 50000) g`,
  `CREATE TABLE sales."Customer Regions" (customer_id integer, region text, since date)`,
  `INSERT INTO sales."Customer Regions"
   SELECT g, (ARRAY['north','south','east','west'])[1 + g % 4], date '2020-01-01' + g FROM generate_series(1, 500) g`,
  // Four days of page views; in Aurora, the third day was loaded before it was complete.
  'CREATE TABLE sales.page_views (day date NOT NULL, id integer NOT NULL, url text)',
  `INSERT INTO sales.page_views
   SELECT d::date, g, '/page/' || g % 50 FROM generate_series(date '2026-01-01', date '2026-01-04', '1 day') d,
          generate_series(1, 2000) g`,
];

const TARGET_SQL = [
  'CREATE ROLE analyst NOLOGIN',
  // The application's role owns its tables; it created them, so it may create in public.
  'CREATE ROLE app_owner NOLOGIN',
  'GRANT USAGE, CREATE ON SCHEMA public TO app_owner',
  'SET ROLE app_owner',
  `CREATE TABLE public.orders (
     id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2),
     status varchar(20), note varchar(1000), ordered_at timestamptz NOT NULL)`,
  `INSERT INTO public.orders SELECT g, 1, 1.00, 'open', 'yesterday', now() FROM generate_series(1, 1000) g`,
  'CREATE INDEX orders_customer ON public.orders (customer_id)',
  `COMMENT ON TABLE public.orders IS 'Orders, refreshed daily from Redshift'`,
  `CREATE VIEW public.open_orders AS SELECT id, customer_id, amount FROM public.orders WHERE status = 'open'`,
  'GRANT SELECT ON public.open_orders TO analyst',
  'GRANT SELECT ON public.orders TO analyst',
  // Partitioned by day: the run replaces only the day whose rows changed and creates the new day.
  `CREATE TABLE public.page_views (day date NOT NULL, id integer NOT NULL, url text,
     PRIMARY KEY (day, id)) PARTITION BY RANGE (day)`,
  ...['01', '02', '03'].map(
    (day) =>
      `CREATE TABLE public.page_views_2026_01_${day} PARTITION OF public.page_views
       FOR VALUES FROM ('2026-01-${day}') TO ('2026-01-${day}'::date + 1)`,
  ),
  `INSERT INTO public.page_views
   SELECT d::date, g, '/page/' || g % 50 FROM generate_series(date '2026-01-01', date '2026-01-03', '1 day') d,
          generate_series(1, CASE WHEN d = '2026-01-03' THEN 700 ELSE 2000 END) g`,
  'GRANT SELECT ON public.page_views TO analyst',
  'RESET ROLE',
];

/** Each partition of public.page_views with its storage (relfilenode): kept unless replaced. */
const PARTITIONS_SQL = `SELECT c.relname AS name, c.relfilenode::text AS filenode
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'public.page_views'::regclass ORDER BY 1`;

/**
 * What a user gives the pipeline's role on their database, beyond local/pipeline-role.ts's
 * grants: acting as the owner of the tables it swaps, and creating in public (rename moves each
 * new version there; PostgreSQL 15 and later no longer let everyone create in public).
 */
const USER_GRANTS = [
  `GRANT app_owner TO ${PIPELINE_LOGIN.user}`,
  `GRANT USAGE, CREATE ON SCHEMA public TO ${PIPELINE_LOGIN.user}`,
];

const CONFIG = {
  tables: [
    { source: 'sales.orders', target: 'public.orders', strategy: 'rename' },
    { source: 'sales."Customer Regions"', target: 'public.customer_regions', strategy: 'rename' },
    { source: 'sales.page_views', target: 'public.page_views' },
  ],
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 60, onMaxWait: 'fail' },
};

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<void> {
  say('Starting an embedded PostgreSQL 17 (stands in for both Redshift and Aurora)...');
  const postgres = await startLocalPostgres();
  const s3Dir = await mkdtemp(join(tmpdir(), 'redshift-aurora-sync-bucket-'));
  // The PostgreSQL server reads the files aws_s3 imports, as its own user.
  await chmod(s3Dir, 0o755);
  const clients: pg.Client[] = [];
  const connect = async (url: string, applicationName: string) => {
    const client = new pg.Client({ connectionString: url, application_name: applicationName });
    await client.connect();
    clients.push(client);
    return client;
  };
  try {
    const sourceUrl = await postgres.createDatabase('demo_redshift');
    const targetUrl = await postgres.createDatabase('demo_aurora');
    const source = await connect(sourceUrl, 'demo setup');
    for (const statement of SOURCE_SQL) await source.query(statement);
    const target = await connect(targetUrl, 'demo setup');
    for (const statement of TARGET_SQL) await target.query(statement);
    await provisionPipelineRole(targetUrl, {
      role: PIPELINE_LOGIN.user,
      password: PIPELINE_LOGIN.password,
      database: decodeURIComponent(new URL(targetUrl).pathname.slice(1)),
    });
    for (const statement of USER_GRANTS) await target.query(statement);
    const pipelineUrl = urlAs(targetUrl, PIPELINE_LOGIN);
    say(
      'Source: sales.orders (50,000 rows), sales."Customer Regions" (500 rows), sales.page_views (4 days of 2,000 rows).',
    );
    say(
      'Target: public.orders (1,000 old rows, owned by app_owner), a view public.open_orders on it, granted to analyst;',
    );
    say(
      '        public.page_views, partitioned by day: 2026-01-01 and 02 as in the source, 03 loaded when it had 700 rows, no 04.',
    );
    const partitionsBefore = new Map(
      (await target.query<{ name: string; filenode: string }>(PARTITIONS_SQL)).rows.map((row) => [
        row.name,
        row.filenode,
      ]),
    );
    say(
      `The pipeline runs as ${PIPELINE_LOGIN.user}: not a superuser; pg_read_all_stats, pg_signal_backend, CREATE on the database, member of app_owner.`,
    );

    const dashboard = await connect(targetUrl, 'demo dashboard');
    await dashboard.query('BEGIN');
    await dashboard.query('SELECT count(*) FROM public.orders');
    say(
      `A dashboard holds a read on public.orders for ${READER_SECONDS} s (a long holder: the swap waits for it).`,
    );
    const releaseReader = new Promise<void>((resolve) =>
      setTimeout(() => {
        dashboard.query('COMMIT').then(
          () => resolve(),
          () => resolve(),
        );
      }, READER_SECONDS * 1000),
    );
    say();

    const deps = await localDeps({
      sourceUrl,
      targetUrl: pipelineUrl,
      // The superuser only installs aws_s3's stand-in (on Aurora, CREATE EXTENSION aws_s3).
      adminUrl: targetUrl,
      s3Dir,
      environment: 'demo',
      // Show the lock wait as it starts; the rest of the step logs would only be noise here.
      onLog: (_level, message, fields) => {
        if (message.startsWith('waiting for sessions')) {
          const blockers = (fields?.blockers ?? []) as string[];
          say(
            `  waiting for locks; blocked by:${blockers.map((reason) => `\n    - ${reason}`).join('')}`,
          );
        }
      },
    });
    let summary: Awaited<ReturnType<typeof runLocalPipeline>>;
    try {
      summary = await runLocalPipeline({
        config: parseRuntimeConfig(CONFIG, 'the demo configuration'),
        deps,
        onProgress: (line) => say(line.startsWith(' ') ? line : `▶ ${line}`),
      });
    } finally {
      await deps.close();
    }
    await releaseReader;
    say();
    say('Run summary:');
    say(JSON.stringify(summary, null, 2));
    if (summary.status !== 'SUCCEEDED') throw new Error('the demo run did not succeed');

    const check = await connect(targetUrl, 'demo check');
    const [facts] = (
      await check.query(`SELECT
        (SELECT count(*) FROM public.orders)::int AS rows,
        (SELECT count(*) FROM public.open_orders)::int AS open_rows,
        has_table_privilege('analyst', 'public.open_orders', 'SELECT') AS analyst_reads_view,
        obj_description('public.orders'::regclass, 'pg_class') AS comment,
        (SELECT count(*) FROM public.customer_regions)::int AS regions,
        (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'redshift_sync') AS installer,
        (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.orders'::regclass) AS owner`)
    ).rows;
    say();
    say(
      `public.orders now has ${facts.rows} rows; the view public.open_orders shows ${facts.open_rows} of them.`,
    );
    say(
      `analyst can still read the view: ${facts.analyst_reads_view}; the comment is still "${facts.comment}".`,
    );
    say(`public.customer_regions was created on this first run with ${facts.regions} rows.`);
    say(
      `The pipeline ran as ${facts.installer} (it owns the redshift_sync schema it installed); public.orders is still owned by ${facts.owner}.`,
    );
    say('public.page_views, partition by partition:');
    for (const { name, filenode } of (await check.query(PARTITIONS_SQL)).rows) {
      const before = partitionsBefore.get(name);
      say(
        `  ${name}: ${
          before === undefined
            ? 'created for the new day, then filled'
            : before === filenode
              ? 'unchanged: same storage, not locked'
              : 'rows changed: replaced (its old version kept for rollback)'
        }`,
      );
    }
  } finally {
    await Promise.allSettled(clients.map((client) => client.end()));
    await postgres.stop();
    await rm(s3Dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    // What the user must fix (a missing OS user, an unreachable TMPDIR) in one line; a bug in full.
    const shown =
      error instanceof ConfigError
        ? `${error.name}: ${error.message}`
        : error instanceof Error
          ? (error.stack ?? error.message)
          : String(error);
    process.stderr.write(`${shown}\n`);
    process.exit(1);
  },
);
