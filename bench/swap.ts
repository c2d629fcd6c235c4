/**
 * Benchmark of the swap: how long readers stall while a swap waits for a long reader (our
 * three strategies against a naive two-statement rename), while short readers keep the table
 * busy, and while readers go through a view on it; and how long `rename` holds its exclusive
 * lock at 100 k and 5 M rows. Starts its own embedded PostgreSQL; prints numbers.
 *
 *   npm run bench:swap                       # defaults: a 30 s long reader
 *   npm run bench:swap -- --reader-seconds 5 # a quick check
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteQualified } from '../lambdas/core/identifiers';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import { dropExpiredVersions, prepareStaging } from '../lambdas/core/swap/engine';
import { swapWhenSafe } from '../lambdas/core/swap/gate';
import { buildSwapPlan, DEFAULT_LOCK_TIMEOUT_MS } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError } from '../lambdas/core/swap/policy';
import type { SwapStrategy } from '../lambdas/core/swap/types';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import { connect, fmt, log, machineDescription, markdownTable, median, textTable } from './common';

const APPLICATION_NAME = 'redshift-aurora-sync-bench';
const STALL_ROWS = 100_000;
const PROBE_INTERVAL_MS = 50; // 20 Hz
const READER_LEAD_MS = 1000; // the long reader starts this long before the swap
const PROBE_TAIL_MS = 2000; // the prober keeps going this long after the swap
const LOCK_SIZES = [100_000, 5_000_000];
/** Busy table: 5 sessions, each a 30 ms read every 100 ms (50 reads a second). */
const BUSY_READERS = 5;
const BUSY_READ_SECONDS = 0.03;
const BUSY_PAUSE_MS = 70;
/** View readers: 3 sessions reading a view on the table every 10 ms. */
const VIEW_READERS = 3;
const VIEW_PAUSE_MS = 10;
/** How long the busy and view cases may wait before the gate gives up (and says so). */
const LOAD_MAX_WAIT_SECONDS = 60;
/** How long the readers of the busy and view cases run before the swap starts. */
const LOAD_LEAD_MS = 1000;
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

/**
 * `count` sessions each running `query` (one parameter: a row id) and pausing `pauseMs`, until
 * stopped; records each query's latency.
 */
async function startReaders(
  url: string,
  applicationName: string,
  count: number,
  query: string,
  pauseMs: number,
) {
  const clients = await Promise.all(
    Array.from({ length: count }, () => connect(url, applicationName)),
  );
  const latencies: number[] = [];
  let running = true;
  const loops = clients.map(async (client, index) => {
    await sleep((index * (pauseMs + 10)) / count);
    while (running) {
      const started = performance.now();
      await client.query(query, [1 + Math.floor(Math.random() * STALL_ROWS)]);
      latencies.push(performance.now() - started);
      await sleep(pauseMs);
    }
    await client.end();
  });
  return {
    latencies,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

type Load = 'long reader' | 'busy table' | 'view readers';

interface StallResult {
  readonly name: string;
  readonly load: Load;
  /** The load's own readers' slowest read (busy-table reads take 30 ms by themselves); null for the long reader. */
  readonly readersMaxMs: number | null;
  /** Why the swap did not happen, when it did not. */
  readonly notSwapped: string | null;
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
  load: Load = 'long reader',
): Promise<StallResult> {
  const name = strategy === 'naive rename' ? 'naive' : strategy;
  const caseName = load === 'long reader' ? strategy : `${strategy}, ${load}`;
  log(`stall: ${caseName}: creating ${STALL_ROWS} rows live + staging`);
  const naive = strategy === 'naive rename';
  const { live, staging } = await liveAndStaging(
    admin,
    load === 'long reader' ? `stall_${name}` : `stall_${name}_${load.replace(' ', '_')}`,
    naive ? 'public' : STAGING_SCHEMA,
    STALL_ROWS,
    false,
  );
  if (naive) {
    await admin.query(`ALTER TABLE ${quoteQualified(staging)} ADD PRIMARY KEY (id)`);
  } else {
    await prepareStaging(sql, { live, staging });
  }

  const view = { schema: 'public', name: `${live.name}_view` };
  if (load === 'view readers') {
    await admin.query(
      `CREATE VIEW ${quoteQualified(view)} AS SELECT id, payload FROM ${quoteQualified(live)}`,
    );
  }
  const prober = await startProber(url, live);
  const reader = load === 'long reader' ? await startLongReader(url, live, readerSeconds) : null;
  const readers =
    load === 'busy table'
      ? await startReaders(
          url,
          'bench-dashboard',
          BUSY_READERS,
          `SELECT payload, pg_sleep(${BUSY_READ_SECONDS}) FROM ${quoteQualified(live)} WHERE id = $1`,
          BUSY_PAUSE_MS,
        )
      : load === 'view readers'
        ? await startReaders(
            url,
            'bench-view-reader',
            VIEW_READERS,
            `SELECT payload FROM ${quoteQualified(view)} WHERE id = $1`,
            VIEW_PAUSE_MS,
          )
        : null;
  await sleep(reader ? READER_LEAD_MS : LOAD_LEAD_MS);
  log(
    reader
      ? `stall: ${caseName}: swapping while a ${readerSeconds} s reader holds AccessShareLock`
      : `stall: ${caseName}: swapping`,
  );
  let notSwapped: string | null = null;

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
      let busy = 0;
      try {
        const outcome = await swapWhenSafe(
          sql,
          plan,
          {
            graceSeconds: 2,
            pollIntervalSeconds: 1,
            maxWaitSeconds: load === 'long reader' ? 3600 : LOAD_MAX_WAIT_SECONDS,
          },
          {
            onProgress: (progress) => {
              if (progress.kind === 'busy') busy += 1;
            },
          },
        );
        attempts = outcome.attempts;
        lockHeldMs = outcome.result.lockHeldMs;
      } catch (error) {
        if (!(error instanceof LockWaitTimeoutError)) throw error;
        attempts = busy;
        notSwapped = error.message.split('\n')[0]!;
        log(`stall: ${caseName}: not swapped: ${error.message}`);
      }
    }
  } finally {
    swapSeconds = (performance.now() - started) / 1000;
    await sleep(PROBE_TAIL_MS);
    await prober.stop();
    await readers?.stop();
    await reader?.done;
  }

  // Staging's row 1 carries md5('2'): check that live now serves the new data.
  const { rows } = await admin.query<{ ok: boolean }>(
    `SELECT payload = md5('2') AS ok FROM ${quoteQualified(live)} WHERE id = 1`,
  );
  if (notSwapped === null && !rows[0]?.ok) {
    throw new Error(`${caseName}: live does not hold the new rows after the swap`);
  }
  return {
    name: caseName,
    load,
    readersMaxMs: readers ? Math.max(...readers.latencies) : null,
    notSwapped,
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
    // Through the gate, as a run swaps: an autovacuum of the freshly filled staging table is
    // made to give way (see attemptLockTimeoutMs) instead of failing a lone 50 ms attempt.
    const { result: swapped } = await swapWhenSafe(sql, plan);
    result.lockHeldMs.push(swapped.lockHeldMs);
    // The successful statement: waiting for its locks, then holding them until its commit.
    result.wallMs.push(swapped.lockWaitMs + swapped.lockHeldMs);
    // The retired live table is not needed: drop it to keep the disk small.
    await dropExpiredVersions(sql, live, { keep: 0 });
  }
  return result;
}

async function main(): Promise<void> {
  const { readerSeconds } = parseArgs(process.argv.slice(2));
  const benchStarted = performance.now();
  console.log(
    `swap benchmark: long reader ${readerSeconds} s, prober ${1000 / PROBE_INTERVAL_MS} Hz, lock_timeout ${DEFAULT_LOCK_TIMEOUT_MS} ms, grace 2 s, poll 1 s`,
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
    for (const load of ['busy table', 'view readers'] as const) {
      stalls.push(await stallCase(url, admin, sql, 'rename', readerSeconds, load));
    }
    const locks: LockResult[] = [];
    for (const rows of LOCK_SIZES) locks.push(await lockHoldCase(admin, sql, rows));

    const stallHeaders = [
      'case',
      'probe max ms',
      'probe p99 ms',
      'probes',
      'load readers max ms',
      'swap s',
      'attempts',
      'lock held ms',
    ];
    const stallRows = stalls.map((s) => [
      s.name,
      fmt(s.maxMs),
      fmt(s.p99Ms),
      String(s.probes),
      s.readersMaxMs === null ? '–' : fmt(s.readersMaxMs),
      s.notSwapped === null ? fmt(s.swapSeconds, 2) : `not swapped (${fmt(s.swapSeconds, 1)})`,
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
      `1. Reader stalls during a swap (${STALL_ROWS.toLocaleString('en-US')} rows; long reader: holds AccessShareLock for ${readerSeconds} s from 1 s before the swap; busy table: ${BUSY_READERS} sessions reading for ${BUSY_READ_SECONDS * 1000} ms every ${BUSY_PAUSE_MS + BUSY_READ_SECONDS * 1000} ms; view readers: ${VIEW_READERS} sessions reading a view on the table every ${VIEW_PAUSE_MS} ms)`,
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
      `Reader stalls during a swap: ${STALL_ROWS.toLocaleString('en-US')}-row table, one reader holding AccessShareLock for ${readerSeconds} s (started 1 s before the swap), a point-query prober at 20 Hz; lock_timeout ${DEFAULT_LOCK_TIMEOUT_MS} ms, grace 2 s, poll 1 s. Busy table: ${BUSY_READERS} sessions each reading for ${BUSY_READ_SECONDS * 1000} ms, then pausing ${BUSY_PAUSE_MS} ms. View readers: ${VIEW_READERS} sessions each reading a view on the table, then pausing ${VIEW_PAUSE_MS} ms.`,
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
