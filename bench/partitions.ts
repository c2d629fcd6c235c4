/**
 * Benchmark of publishing a day-partitioned live table partition by partition, on the
 * embedded PostgreSQL, as the pipeline's non-superuser role: a staging table equal to live
 * (nothing changed), then one with one day changed. For each: the time preparing takes (the
 * exact comparison of every partition with staging, and the replacement of the changed day
 * with its indexes), the swap's lock wait and hold, and what it locked. Then `--swaps` days
 * changed at once, swapped one day at a time, each swap from a session of its own, as over the
 * RDS Data API (no session of ours lasts between calls): the medians of those swaps. Prints
 * numbers.
 *
 *   npm run bench:partitions                                  # 30 days of 100,000 rows, 10 swaps
 *   npm run bench:partitions -- --days 10 --rows 20000        # a quick check
 */
import { performance } from 'node:perf_hooks';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { plannedPartitions } from '../lambdas/core/partitions/prepare';
import { installSchema } from '../lambdas/core/schema/install';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { provisionPipelineRole, urlAs } from '../local/pipeline-role';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import {
  connect,
  fmt,
  log,
  machineDescription,
  median,
  parseWholeNumberFlags,
  textTable,
} from './common';

const PIPELINE_LOGIN = { user: 'bench_pipeline', password: 'bench-pipeline' };
const live = { schema: 'public', name: 'events' };

async function main(): Promise<void> {
  const usage =
    'usage: tsx bench/partitions.ts [--days N] [--rows N] [--swaps N]  (default 30 days of 100000 rows each, 10 swaps; fewer swaps than days)';
  const { days, rows, swaps } = parseWholeNumberFlags(
    process.argv.slice(2),
    {
      days: { default: 30, least: 2 },
      rows: { default: 100_000, least: 100 },
      swaps: { default: 10, least: 1 },
    },
    usage,
  );
  if (swaps >= days) throw new Error(usage);
  console.log(
    `partitioned publish benchmark: ${days} day partitions of ${rows.toLocaleString('en-US')} rows`,
  );
  let server: LocalPostgres | undefined;
  const sessions: { end(): Promise<void> }[] = [];
  try {
    log('starting embedded PostgreSQL');
    server = await startLocalPostgres();
    const url = await server.createDatabase('bench_partitions');
    const admin = await connect(url, 'bench-admin');
    sessions.push(admin);
    await provisionPipelineRole(url, {
      role: PIPELINE_LOGIN.user,
      password: PIPELINE_LOGIN.password,
      database: decodeURIComponent(new URL(url).pathname.slice(1)),
    });
    log('creating the live table');
    await admin.query(`CREATE ROLE bench_owner NOLOGIN;
      GRANT bench_owner TO ${PIPELINE_LOGIN.user};
      GRANT USAGE, CREATE ON SCHEMA public TO ${PIPELINE_LOGIN.user}, bench_owner;
      SET ROLE bench_owner;
      CREATE TABLE public.events (day date NOT NULL, id integer NOT NULL, amount numeric(12,2),
                                  url text, PRIMARY KEY (day, id)) PARTITION BY RANGE (day);
      CREATE INDEX events_url ON public.events (url);
      RESET ROLE`);
    const { rows: creates } = await admin.query<{ statement: string }>(
      `SELECT format('CREATE TABLE public.events_%s PARTITION OF public.events FOR VALUES FROM (%L) TO (%L)',
                     to_char(d, 'YYYYMMDD'), d::date, (d + interval '1 day')::date) AS statement
       FROM generate_series(date '2026-01-01', date '2026-01-01' + ${days - 1}, '1 day') d`,
    );
    await admin.query('SET ROLE bench_owner');
    for (const { statement } of creates) await admin.query(statement);
    await admin.query(
      `INSERT INTO public.events SELECT d::date, g, (g % 997) * 1.37, '/page/' || g % 5000
       FROM generate_series(date '2026-01-01', date '2026-01-01' + ${days - 1}, '1 day') d,
            generate_series(1, ${rows}) g`,
    );
    await admin.query('RESET ROLE');
    await admin.query('VACUUM ANALYZE public.events');
    const pipeline = await connect(urlAs(url, PIPELINE_LOGIN), 'redshift-aurora-sync');
    sessions.push(pipeline);
    const sql = new PgSqlClient(pipeline);
    await installSchema(sql);

    const results: string[][] = [];
    for (const [index, scenario] of ['nothing changed', 'one day changed'].entries()) {
      const staging = { schema: 'redshift_sync_staging', name: `events_${index}` };
      await pipeline.query(
        `CREATE TABLE redshift_sync_staging.${staging.name} (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
      );
      await pipeline.query(
        `INSERT INTO redshift_sync_staging.${staging.name}
         SELECT day, id, CASE WHEN $1 AND day = '2026-01-02' AND id = 7 THEN -1 ELSE amount END, url
         FROM public.events`,
        [index === 1],
      );
      log(`${scenario}: preparing`);
      const table = { live, staging, strategy: 'rename' as const };
      const started = performance.now();
      await prepareStaging(sql, table);
      const prepareSeconds = (performance.now() - started) / 1000;
      const partitions = (await plannedPartitions(sql, table)) ?? [];
      const outcome = await attemptSwap(
        sql,
        buildSwapPlan([{ ...table, partitions }], { runId: `bench-${index}` }),
      );
      if (outcome.status !== 'swapped') throw new Error(`the swap was busy: ${outcome.message}`);
      results.push([
        scenario,
        String(partitions.length),
        fmt(prepareSeconds, 2),
        fmt(outcome.result.lockWaitMs),
        fmt(outcome.result.lockHeldMs),
        String(outcome.result.locks.length),
      ]);
    }
    log(`${swaps} days changed: preparing, then one swap per day, each from a new session`);
    const staging = { schema: 'redshift_sync_staging', name: 'events_days' };
    await pipeline.query(
      `CREATE TABLE redshift_sync_staging.${staging.name} (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`,
    );
    await pipeline.query(
      `INSERT INTO redshift_sync_staging.${staging.name}
       SELECT day, id, CASE WHEN day > '2026-01-01' AND day <= date '2026-01-01' + $1::int AND id = 7 THEN -2 ELSE amount END, url
       FROM public.events`,
      [swaps],
    );
    const table = { live, staging, strategy: 'rename' as const };
    const started = performance.now();
    await prepareStaging(sql, table);
    const prepareSeconds = (performance.now() - started) / 1000;
    const waits: number[] = [];
    const holds: number[] = [];
    let locked = 0;
    for (const [index, partition] of ((await plannedPartitions(sql, table)) ?? []).entries()) {
      // The swap drops staging (each replacement is its own table): an empty one stands in.
      await pipeline.query(
        `CREATE TABLE IF NOT EXISTS redshift_sync_staging.${staging.name} (LIKE public.events)`,
      );
      const session = await connect(urlAs(url, PIPELINE_LOGIN), 'redshift-aurora-sync');
      try {
        const outcome = await attemptSwap(
          new PgSqlClient(session),
          buildSwapPlan([{ ...table, partitions: [partition] }], { runId: `bench-day-${index}` }),
        );
        if (outcome.status !== 'swapped') throw new Error(`the swap was busy: ${outcome.message}`);
        waits.push(outcome.result.lockWaitMs);
        holds.push(outcome.result.lockHeldMs);
        locked = outcome.result.locks.length;
      } finally {
        await session.end();
      }
    }
    results.push([
      `${swaps} days changed, medians of ${holds.length} swaps of one day, new sessions`,
      '1',
      fmt(prepareSeconds, 2),
      fmt(median(waits)),
      fmt(median(holds)),
      String(locked),
    ]);
    console.log();
    console.log(
      textTable(
        [
          'staging',
          'partitions replaced',
          'prepare s',
          'lock wait ms',
          'locks held ms',
          'relations locked',
        ],
        results,
      ),
    );
    console.log();
    console.log(`machine: ${machineDescription()}`);
  } finally {
    await Promise.allSettled(sessions.map((session) => session.end()));
    await server?.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
