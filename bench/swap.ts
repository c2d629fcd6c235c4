/**
 * Benchmark of the swap: how long readers stall while a swap waits for a long reader (our
 * three strategies against a naive two-statement rename), and how long `rename` holds its
 * exclusive lock at 100 k and 5 M rows. Starts its own embedded PostgreSQL; prints numbers.
 *
 *   npm run bench:swap                       # defaults: a 30 s long reader
 *   npm run bench:swap -- --reader-seconds 5 # a quick check
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteQualified } from '../lambdas/core/identifiers';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import {
  attemptSwap,
  dropExpiredVersions,
  installSchema,
  prepareStaging,
} from '../lambdas/core/swap/engine';
import { swapWhenSafe } from '../lambdas/core/swap/gate';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import type { SwapStrategy } from '../lambdas/core/swap/types';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import { connect, fmt, log, machineDescription, markdownTable, median, textTable } from './common';

const APPLICATION_NAME = 'redshift-aurora-sync-bench';
const STALL_ROWS = 100_000;
const PROBE_INTERVAL_MS = 50; // 20 Hz
const READER_LEAD_MS = 1000; // the long reader starts this long before the swap
const PROBE_TAIL_MS = 2000; // the prober keeps going this long after the swap
const LOCK_SIZES = [100_000, 5_000_000];
const LOCK_REPEATS = 3;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function parseArgs(argv: readonly string[]): { readerSeconds: number } {
  let readerSeconds = 30;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.split('=', 2);
    if (flag === '--reader-seconds') {
      const value = Number(inline ?? argv[++i]);
      if (!Number.isFinite(value) || value < 2) {
        throw new Error('--reader-seconds must be a number of seconds, at least 2');
      }
      readerSeconds = value;
    } else if (arg === '--help' || arg === '-h') {
      console.log('usage: tsx bench/swap.ts [--reader-seconds N]  (default 30)');
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${JSON.stringify(arg)}; try --help`);
    }
  }
  return { readerSeconds };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

/** A live table (id int primary key, payload text) and a same-shaped staging table. */
async function liveAndStaging(
  admin: pg.Client,
  liveName: string,
  stagingSchema: string,
  rows: number,
  secondaryIndex: boolean,
): Promise<{ live: QualifiedName; staging: QualifiedName }> {
  const live = { schema: 'public', name: liveName };
  const staging = { schema: stagingSchema, name: `${liveName}_staging` };
  const liveSql = quoteQualified(live);
  await admin.query(`CREATE TABLE ${liveSql} (id int PRIMARY KEY, payload text)`);
  await admin.query(
    `INSERT INTO ${liveSql} SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g`,
  );
  if (secondaryIndex) await admin.query(`CREATE INDEX ON ${liveSql} (payload)`);
  await admin.query(`VACUUM ANALYZE ${liveSql}`);
  await createStaging(admin, live, staging, rows);
  return { live, staging };
}

async function createStaging(
  admin: pg.Client,
  live: QualifiedName,
  staging: QualifiedName,
  rows: number,
): Promise<void> {
  const stagingSql = quoteQualified(staging);
  await admin.query(
    `CREATE TABLE ${stagingSql} (LIKE ${quoteQualified(live)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)`,
  );
  await admin.query(
    `INSERT INTO ${stagingSql} SELECT g, md5((g + 1)::text) FROM generate_series(1, ${rows}) g`,
  );
}

/** Runs a cheap point query at 20 Hz on its own session; records each one's latency. */
async function startProber(url: string, live: QualifiedName) {
  const client = await connect(url, 'bench-prober');
  const sql = `SELECT count(*) FROM ${quoteQualified(live)} WHERE id = $1`;
  await client.query(sql, [1]); // warm the session's catalog cache
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    const origin = performance.now();
    let tick = 0;
    while (running) {
      const started = performance.now();
      await client.query(sql, [1 + Math.floor(Math.random() * STALL_ROWS)]);
      latencies.push(performance.now() - started);
      tick += 1;
      // A fixed schedule: after a stall the next probe goes at once, then back on the beat.
      const next = origin + tick * PROBE_INTERVAL_MS;
      const wait = next - performance.now();
      if (wait > 0) await sleep(wait);
      else tick = Math.ceil((performance.now() - origin) / PROBE_INTERVAL_MS);
    }
  })();
  return {
    latencies,
    async stop() {
      running = false;
      await loop;
      await client.end();
    },
  };
}

/** BEGIN; SELECT count(*) — holds AccessShareLock, idle in transaction, until COMMIT after `seconds`. */
async function startLongReader(url: string, live: QualifiedName, seconds: number) {
  const client = await connect(url, 'bench-long-report');
  const started = performance.now();
  await client.query('BEGIN');
  await client.query(`SELECT count(*) FROM ${quoteQualified(live)}`);
  const done = (async () => {
    await sleep(Math.max(0, started + seconds * 1000 - performance.now()));
    await client.query('COMMIT');
    await client.end();
  })();
  return { done };
}

interface StallResult {
  readonly name: string;
  readonly maxMs: number;
  readonly p99Ms: number;
  readonly probes: number;
  readonly swapSeconds: number;
  readonly attempts: number | null;
  readonly lockHeldMs: number | null;
}

async function stallCase(
  url: string,
  admin: pg.Client,
  sql: PgSqlClient,
  strategy: SwapStrategy | 'naive rename',
  readerSeconds: number,
): Promise<StallResult> {
  const name = strategy === 'naive rename' ? 'naive' : strategy;
  log(`stall: ${strategy}: creating ${STALL_ROWS} rows live + staging`);
  const naive = strategy === 'naive rename';
  const { live, staging } = await liveAndStaging(
    admin,
    `stall_${name}`,
    naive ? 'public' : STAGING_SCHEMA,
    STALL_ROWS,
    false,
  );
  if (naive) {
    await admin.query(`ALTER TABLE ${quoteQualified(staging)} ADD PRIMARY KEY (id)`);
  } else {
    await prepareStaging(sql, { live, staging });
  }

  const prober = await startProber(url, live);
  const reader = await startLongReader(url, live, readerSeconds);
  await sleep(READER_LEAD_MS);
  log(`stall: ${strategy}: swapping while a ${readerSeconds} s reader holds AccessShareLock`);

  let attempts: number | null = null;
  let lockHeldMs: number | null = null;
  const started = performance.now();
  let swapSeconds = Number.NaN;
  try {
    if (naive) {
      const swapper = await connect(url, 'bench-naive-rename');
      try {
        await swapper.query('BEGIN');
        await swapper.query(`ALTER TABLE ${quoteQualified(live)} RENAME TO ${name}_old`);
        await swapper.query(
          `ALTER TABLE ${quoteQualified(staging)} RENAME TO "${live.name.replaceAll('"', '""')}"`,
        );
        await swapper.query('COMMIT');
      } finally {
        await swapper.end();
      }
    } else {
      const plan = buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], {
        runId: `bench-stall-${name}`,
      });
      const outcome = await swapWhenSafe(sql, plan, {
        graceSeconds: 2,
        pollIntervalSeconds: 1,
      });
      attempts = outcome.attempts;
      lockHeldMs = outcome.result.lockHeldMs;
    }
  } finally {
    swapSeconds = (performance.now() - started) / 1000;
    await sleep(PROBE_TAIL_MS);
    await prober.stop();
    await reader.done;
  }

  // Staging's row 1 carries md5('2'): check that live now serves the new data.
  const { rows } = await admin.query<{ ok: boolean }>(
    `SELECT payload = md5('2') AS ok FROM ${quoteQualified(live)} WHERE id = 1`,
  );
  if (!rows[0]?.ok) throw new Error(`${strategy}: live does not hold the new rows after the swap`);
  return {
    name: strategy,
    maxMs: Math.max(...prober.latencies),
    p99Ms: percentile(prober.latencies, 99),
    probes: prober.latencies.length,
    swapSeconds,
    attempts,
    lockHeldMs,
  };
}

interface LockResult {
  readonly rows: number;
  readonly prepareMs: number[];
  readonly lockHeldMs: number[];
  readonly wallMs: number[];
}

async function lockHoldCase(admin: pg.Client, sql: PgSqlClient, rows: number): Promise<LockResult> {
  const name = `held_${rows}`;
  log(`lock hold: creating ${rows.toLocaleString('en-US')} rows live`);
  const live = { schema: 'public', name };
  const liveSql = quoteQualified(live);
  await admin.query(`CREATE TABLE ${liveSql} (id int PRIMARY KEY, payload text)`);
  await admin.query(
    `INSERT INTO ${liveSql} SELECT g, md5(g::text) FROM generate_series(1, ${rows}) g`,
  );
  await admin.query(`CREATE INDEX ON ${liveSql} (payload)`);
  await admin.query(`VACUUM ANALYZE ${liveSql}`);
  const result: LockResult = { rows, prepareMs: [], lockHeldMs: [], wallMs: [] };
  for (let repeat = 1; repeat <= LOCK_REPEATS; repeat++) {
    const staging = { schema: STAGING_SCHEMA, name: `${name}_staging_${repeat}` };
    log(`lock hold: ${rows.toLocaleString('en-US')} rows, run ${repeat}: filling staging`);
    await createStaging(admin, live, staging, rows);
    const prepareStarted = performance.now();
    await prepareStaging(sql, { live, staging });
    result.prepareMs.push(performance.now() - prepareStarted);
    const plan = buildSwapPlan([{ live, staging, strategy: 'rename' }], {
      runId: `bench-held-${rows}-${repeat}`,
    });
    const started = performance.now();
    const attempt = await attemptSwap(sql, plan);
    const wallMs = performance.now() - started;
    if (attempt.status !== 'swapped') {
      throw new Error(`lock hold: swap came back ${attempt.reason}: ${attempt.message}`);
    }
    result.lockHeldMs.push(attempt.result.lockHeldMs);
    result.wallMs.push(wallMs);
    // The retired live table is not needed: drop it to keep the disk small.
    await dropExpiredVersions(sql, live, { keep: 0 });
  }
  return result;
}

async function main(): Promise<void> {
  const { readerSeconds } = parseArgs(process.argv.slice(2));
  const benchStarted = performance.now();
  console.log(
    `swap benchmark: long reader ${readerSeconds} s, prober ${1000 / PROBE_INTERVAL_MS} Hz, lock_timeout 200 ms, grace 2 s, poll 1 s`,
  );
  let server: LocalPostgres | undefined;
  let admin: pg.Client | undefined;
  // Ctrl-C: stop the server before leaving.
  process.once('SIGINT', () => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
  try {
    log('starting embedded PostgreSQL');
    server = await startLocalPostgres();
    const url = await server.createDatabase('bench');
    admin = await connect(url, APPLICATION_NAME);
    const sql = new PgSqlClient(admin);
    await installSchema(sql);
    const { rows: versionRows } = await admin.query<{ version: string }>(
      'SELECT version() AS version',
    );

    const stalls: StallResult[] = [];
    for (const strategy of ['rename', 'truncate', 'merge', 'naive rename'] as const) {
      stalls.push(await stallCase(url, admin, sql, strategy, readerSeconds));
    }
    const locks: LockResult[] = [];
    for (const rows of LOCK_SIZES) locks.push(await lockHoldCase(admin, sql, rows));

    const stallHeaders = [
      'case',
      'probe max ms',
      'probe p99 ms',
      'probes',
      'swap s',
      'attempts',
      'lock held ms',
    ];
    const stallRows = stalls.map((s) => [
      s.name,
      fmt(s.maxMs),
      fmt(s.p99Ms),
      String(s.probes),
      fmt(s.swapSeconds, 2),
      s.attempts === null ? '–' : String(s.attempts),
      s.lockHeldMs === null ? '–' : fmt(s.lockHeldMs),
    ]);
    const lockHeaders = [
      'rows',
      'lockHeldMs (median)',
      'statement wall ms (median)',
      'prepareStaging ms (median)',
      'lockHeldMs runs',
      'wall ms runs',
    ];
    const lockRows = locks.map((l) => [
      l.rows.toLocaleString('en-US'),
      fmt(median(l.lockHeldMs)),
      fmt(median(l.wallMs)),
      fmt(median(l.prepareMs), 0),
      l.lockHeldMs.map((v) => fmt(v)).join(' / '),
      l.wallMs.map((v) => fmt(v)).join(' / '),
    ]);
    const machine = machineDescription();
    const postgres = versionRows[0]!.version;

    console.log('');
    console.log(
      `1. Reader stalls during a swap (${STALL_ROWS.toLocaleString('en-US')} rows; a reader holds AccessShareLock for ${readerSeconds} s from 1 s before the swap)`,
    );
    console.log(textTable(stallHeaders, stallRows));
    console.log('');
    console.log(
      `2. rename: exclusive lock held, no other sessions (PK + one secondary index; ${LOCK_REPEATS} runs each)`,
    );
    console.log(textTable(lockHeaders, lockRows));
    console.log('');
    console.log(`machine:    ${machine}`);
    console.log(`postgres:   ${postgres}`);
    console.log(`total time: ${fmt((performance.now() - benchStarted) / 1000)} s`);
    console.log('');
    console.log('Markdown:');
    console.log('');
    console.log(
      `Reader stalls during a swap: ${STALL_ROWS.toLocaleString('en-US')}-row table, one reader holding AccessShareLock for ${readerSeconds} s (started 1 s before the swap), a point-query prober at 20 Hz; lock_timeout 200 ms, grace 2 s, poll 1 s.`,
    );
    console.log('');
    console.log(markdownTable(stallHeaders, stallRows));
    console.log('');
    console.log(
      `How long \`rename\` holds its exclusive lock (no other sessions; PK + one secondary index; median of ${LOCK_REPEATS}):`,
    );
    console.log('');
    console.log(
      markdownTable(
        lockHeaders.slice(0, 4),
        lockRows.map((r) => r.slice(0, 4)),
      ),
    );
    console.log('');
    console.log(`Machine: ${machine}. PostgreSQL: ${postgres}.`);
  } finally {
    await admin?.end().catch(() => {});
    await server?.stop().catch((error: unknown) => console.error('stopping PostgreSQL:', error));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
