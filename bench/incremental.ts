/**
 * Benchmark of incremental sync end to end: the local run a user starts with `npm run
 * sync:local` (the synthesized state machine over the real steps, the UNLOAD emulator, the
 * aws_s3 stand-in, the pipeline as its non-superuser role), for one table with `incremental`
 * (mode merge on its primary key, strategy rename), timed from opening the run's connections to
 * closing them. Each round changes 1 % of the source's rows (a new `updated_at`, a new amount),
 * then runs once as an increment and once as a full refresh (`fullRefresh: true`, as
 * `--full-refresh` asks) after changing another 1 %, so both runs see the same table and the
 * same amount of change. Prints the two side by side, and where each run's time goes (the
 * top-level states of the state machine). Starts its own embedded PostgreSQL; prints numbers.
 *
 *   npm run bench:incremental                          # defaults: 2,000,000 rows, 3 rounds
 *   npm run bench:incremental -- --rows 200000 --runs 1 # a quick check
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { provisionPipelineRole, urlAs } from '../local/pipeline-role';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import { localDeps } from '../local/run/deps';
import { runLocalPipeline } from '../local/run/pipeline';
import {
  connect,
  fmt,
  log,
  machineDescription,
  markdownTable,
  median,
  parseWholeNumberFlags,
  textTable,
} from './common';

const PIPELINE_LOGIN = { user: 'bench_pipeline', password: 'bench-pipeline' };
/** Every run of a round changes this share of the rows. */
const CHANGED_SHARE = 0.01;
const CONFIG = {
  tables: [
    {
      source: 'sales.orders',
      target: 'public.orders',
      strategy: 'rename',
      incremental: { cursor: 'updated_at', mode: 'merge' },
    },
  ],
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 60, onMaxWait: 'fail' },
};

/** The source's columns: a fact table's mix, `updated_at` the cursor every change moves. */
const COLUMNS = `id bigint NOT NULL PRIMARY KEY,
  quantity integer,
  amount numeric(12,2),
  note varchar(200),
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  shipped boolean`;

const ROWS_SQL = `SELECT g,
   CASE WHEN g % 97 = 0 THEN NULL ELSE (g * 7919) % 100000 - 50000 END,
   CASE WHEN g % 89 = 0 THEN NULL ELSE ((g * 104729) % 100000000 - 50000000) / 100.0 END,
   CASE g % 20 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'pipe | and back\\\\slash ' || g
     ELSE 'order ' || g || ' ' || md5(g::text) END,
   timestamptz '2024-01-01 00:00:00+00' + g * interval '31 seconds',
   timestamptz '2024-01-01 00:00:00+00' + g * interval '31 seconds',
   CASE WHEN g % 53 = 0 THEN NULL ELSE g % 3 <> 0 END
  FROM generate_series(1, $1::bigint) AS g`;

interface Timed {
  readonly seconds: number;
  /**
   * Seconds from opening the connections to the first state entered: the aws_s3 stand-in, and
   * the state machine synthesized and checked, which the process does once (local/run/definition.ts),
   * so in the first run only.
   */
  readonly startSeconds: number;
  /** Seconds in each top-level state, by name, in the order entered. */
  readonly states: ReadonlyMap<string, number>;
  readonly summary: RunSummary;
}

async function timedRun(
  sourceUrl: string,
  pipelineUrl: string,
  adminUrl: string,
  s3Dir: string,
  request: Record<string, unknown>,
): Promise<Timed> {
  const started = performance.now();
  const deps = await localDeps({
    sourceUrl,
    targetUrl: pipelineUrl,
    adminUrl,
    s3Dir,
    onLog: () => {},
  });
  const states = new Map<string, number>();
  let current: string | null = null;
  let since = 0;
  let firstState = 0;
  let summary: RunSummary;
  try {
    summary = (await runLocalPipeline({
      config: parseRuntimeConfig(CONFIG, 'the benchmark configuration'),
      request,
      deps,
      onProgress: (line) => {
        if (line.startsWith(' ')) return;
        const now = performance.now();
        if (current) states.set(current, (states.get(current) ?? 0) + (now - since) / 1000);
        else firstState = now;
        current = line;
        since = now;
      },
    })) as RunSummary;
    const now = performance.now();
    if (current) states.set(current, (states.get(current) ?? 0) + (now - since) / 1000);
  } finally {
    await deps.close();
  }
  if (summary.status !== 'SUCCEEDED') {
    throw new Error(`the run did not succeed: ${JSON.stringify(summary)}`);
  }
  return {
    seconds: (performance.now() - started) / 1000,
    startSeconds: (firstState - started) / 1000,
    states,
    summary,
  };
}

async function main(): Promise<void> {
  const {
    rows,
    runs,
    'slow-ms': slowMs,
  } = parseWholeNumberFlags(
    process.argv.slice(2),
    {
      rows: { default: 2_000_000, least: 10_000 },
      runs: { default: 3, least: 1 },
      'slow-ms': { default: null, least: 0 },
    },
    "usage: tsx bench/incremental.ts [--rows N] [--runs N] [--slow-ms N]  (default 2000000 rows, 3 rounds; --slow-ms: print the server's statements that took longer than N ms)",
  );
  const benchStarted = performance.now();
  const rowsText = rows.toLocaleString('en-US');
  const changed = Math.round(rows * CHANGED_SHARE);
  console.log(
    `incremental benchmark: ${rowsText} rows, ${changed.toLocaleString('en-US')} changed (${CHANGED_SHARE * 100} %) before each run, ${runs} round(s) of an incremental and a full run`,
  );
  let server: LocalPostgres | undefined;
  let s3Dir: string | undefined;
  const sessions: { end(): Promise<void> }[] = [];
  process.once('SIGINT', () => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
  try {
    log('starting embedded PostgreSQL');
    server = await startLocalPostgres(
      slowMs === null
        ? {}
        : {
            // auto_explain shows the statements inside functions too (the swap's).
            settings: {
              log_min_duration_statement: String(slowMs),
              session_preload_libraries: 'auto_explain',
              'auto_explain.log_min_duration': String(slowMs),
              'auto_explain.log_nested_statements': 'on',
            },
            onLog: (line) => {
              if (line.includes('duration:')) console.log(`  server: ${line.slice(0, 600)}`);
            },
          },
    );
    const sourceUrl = await server.createDatabase('bench_source');
    const targetUrl = await server.createDatabase('bench_target');
    s3Dir = await mkdtemp(join(tmpdir(), 'bench-incremental-s3-'));
    await chmod(s3Dir, 0o755);
    const source = await connect(sourceUrl, 'bench-source-admin');
    sessions.push(source);
    const target = await connect(targetUrl, 'bench-target-admin');
    sessions.push(target);

    log(`creating the source table: ${rowsText} rows`);
    // The index on the cursor stands in for what Redshift does with a sort key on it: zone
    // maps let a `WHERE updated_at >= ...` read only the blocks past the watermark. Without
    // it the emulator scans all 2 M rows twice more (the delta's UNLOAD and its figures).
    await source.query(`CREATE SCHEMA sales; CREATE TABLE sales.orders (${COLUMNS});
      CREATE INDEX orders_updated_at ON sales.orders (updated_at)`);
    await source.query({ text: `INSERT INTO sales.orders ${ROWS_SQL}`, values: [rows] });
    await source.query('VACUUM ANALYZE sales.orders');
    await provisionPipelineRole(targetUrl, {
      role: PIPELINE_LOGIN.user,
      password: PIPELINE_LOGIN.password,
      database: decodeURIComponent(new URL(targetUrl).pathname.slice(1)),
    });
    // The live table belongs to a user role, with a secondary index, as users' tables do.
    await target.query(`CREATE ROLE bench_owner NOLOGIN;
      CREATE TABLE public.orders (${COLUMNS});
      CREATE INDEX orders_updated_at ON public.orders (updated_at);
      ALTER TABLE public.orders OWNER TO bench_owner;
      GRANT bench_owner TO ${PIPELINE_LOGIN.user};
      GRANT USAGE, CREATE ON SCHEMA public TO ${PIPELINE_LOGIN.user}, bench_owner`);
    const pipelineUrl = urlAs(targetUrl, PIPELINE_LOGIN);
    const run = (request: Record<string, unknown>) =>
      timedRun(sourceUrl, pipelineUrl, targetUrl, s3Dir!, request);

    log('first run: full, sets the watermark');
    const first = await run({});
    let round = 0;
    const changeOnePercent = async () => {
      round += 1;
      // A different 1 % each time, stamped past every cursor value so far.
      const { rowCount } = await source.query({
        text: `UPDATE sales.orders
                  SET amount = coalesce(amount, 0) + 1,
                      updated_at = timestamptz '2030-01-01 00:00:00+00' + $1::int * interval '1 day'
                WHERE id % $2::bigint = $1::bigint`,
        values: [round, Math.round(1 / CHANGED_SHARE)],
      });
      if (rowCount !== changed) throw new Error(`changed ${rowCount} rows, not ${changed}`);
      await source.query('VACUUM ANALYZE sales.orders');
      await target.query('CHECKPOINT');
    };

    const incremental: Timed[] = [];
    const full: Timed[] = [];
    for (let i = 1; i <= runs; i++) {
      await changeOnePercent();
      log(`round ${i}/${runs}: incremental run`);
      incremental.push(await run({}));
      await changeOnePercent();
      log(`round ${i}/${runs}: full run (fullRefresh)`);
      full.push(await run({ fullRefresh: true }));
    }
    for (const timed of incremental) {
      const [table] = timed.summary.tables;
      if (table?.mode !== 'incremental') {
        throw new Error(`an incremental run ran ${JSON.stringify(table)}`);
      }
    }
    const [check] = (
      await target.query<{ n: number }>('SELECT count(*)::int AS n FROM public.orders')
    ).rows;
    if (check!.n !== rows) throw new Error(`live has ${check!.n} rows, not ${rows}`);

    const stateNames = [...new Set([...full, ...incremental].flatMap((t) => [...t.states.keys()]))];
    const perRuns = (values: readonly number[]) => values.map((v) => fmt(v, 2)).join(' / ');
    const lineOf = (name: string, inc: readonly number[], whole: readonly number[]) => [
      name,
      fmt(median(inc), 2),
      fmt(median(whole), 2),
      perRuns(inc),
      perRuns(whole),
    ];
    const stateSeconds = (runsOf: readonly Timed[], name: string) =>
      runsOf.map((t) => t.states.get(name) ?? 0);
    const tableRows = [
      lineOf(
        'end to end (connections opened to closed)',
        incremental.map((t) => t.seconds),
        full.map((t) => t.seconds),
      ),
      lineOf(
        '· start (connections, aws_s3 stand-in)',
        incremental.map((t) => t.startSeconds),
        full.map((t) => t.startSeconds),
      ),
      // The Choice and Succeed states take no measurable time: left out.
      ...stateNames
        .filter((name) => [...full, ...incremental].some((t) => (t.states.get(name) ?? 0) >= 0.005))
        .map((name) =>
          lineOf(`· ${name}`, stateSeconds(incremental, name), stateSeconds(full, name)),
        ),
    ];
    const headers = [
      'stage',
      'incremental s (median)',
      'full s (median)',
      'incremental s per run',
      'full s per run',
    ];
    const incSeconds = median(incremental.map((t) => t.seconds));
    const fullSeconds = median(full.map((t) => t.seconds));
    const [incTable] = incremental.at(-1)!.summary.tables;
    const caption = `${rowsText} rows (bigint key, integer, numeric(12,2), varchar(200), two timestamptz, boolean; an index on updated_at in the source standing in for Redshift's sort key, a secondary index on live), ${changed.toLocaleString('en-US')} rows changed before each run; strategy rename, incremental merge on the key by updated_at; the local run (sync:local's path) on one embedded PostgreSQL; median of ${runs} round(s), each line its own median.`;
    const verdict = `The incremental run takes ${fmt(incSeconds, 2)} s, the full run ${fmt(fullSeconds, 2)} s: ${fmt(fullSeconds / incSeconds, 1)}x faster end to end. Last increment: ${JSON.stringify({ inserted: incTable?.inserted, updated: incTable?.updated, watermarkBefore: incTable?.watermarkBefore, watermarkAfter: incTable?.watermarkAfter })}. The first (full) run took ${fmt(first.seconds, 2)} s.`;
    const machine = machineDescription();
    const [facts] = (await target.query<{ version: string }>('SELECT version() AS version')).rows;
    console.log('');
    console.log(caption);
    console.log(textTable(headers, tableRows));
    console.log(verdict);
    console.log('');
    console.log(`machine:    ${machine}`);
    console.log(`postgres:   ${facts!.version}`);
    console.log(`total time: ${fmt((performance.now() - benchStarted) / 1000)} s`);
    console.log('');
    console.log('Markdown:');
    console.log('');
    console.log(markdownTable(headers, tableRows));
  } finally {
    for (const session of sessions.reverse()) await session.end().catch(() => {});
    await server?.stop().catch((error: unknown) => console.error('stopping PostgreSQL:', error));
    if (s3Dir) await rm(s3Dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
