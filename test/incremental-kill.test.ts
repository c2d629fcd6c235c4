/**
 * Reliability of incremental sync: `npm run sync:local` killed (SIGKILL, no clean-up) after the
 * unload of an increment, or during its apply (inside the swap's transaction), leaves every
 * live table and its watermark as they were; the next run applies the increment exactly once
 * (merge: the changed rows updated and the new ones inserted; append: each new row once) and
 * advances the watermark.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { rowsOf } from './support/local-pipeline';

const ROWS = 5_000;

let ground: DatabasesAndBucket;
let configPath: string;

beforeAll(async () => {
  ground = await databasesAndBucket('incremental-kill-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
    INSERT INTO sales.orders
      SELECT g, g * 1.5, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 s' FROM generate_series(1, ${ROWS}) g;
    CREATE TABLE sales.log (seq bigint NOT NULL, msg text);
    INSERT INTO sales.log SELECT g, 'line ' || g FROM generate_series(1, ${ROWS}) g;`);
  await ground.target.query(`
    CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
    CREATE TABLE public.log (seq bigint NOT NULL, msg text);
    ALTER TABLE public.orders OWNER TO ${ground.owner};
    ALTER TABLE public.log OWNER TO ${ground.owner};
  `);
  configPath = join(ground.s3Dir, 'config.json');
  await writeFile(
    configPath,
    JSON.stringify({
      // The append table first: in the swap's transaction its rows are in before the merge
      // table's UPDATE, which the apply case holds up on a row lock.
      tables: [
        {
          source: 'sales.log',
          target: 'public.log',
          incremental: { cursor: 'seq', mode: 'append' },
        },
        {
          source: 'sales.orders',
          target: 'public.orders',
          incremental: { cursor: 'updated_at', mode: 'merge' },
        },
      ],
      // A young row lock does not hold the gate back (graceSeconds), so the swap's UPDATE
      // waits for it inside the transaction (lockTimeoutMs) instead.
      locks: {
        lockTimeoutMs: 30_000,
        pollIntervalSeconds: 1,
        maxWaitSeconds: 60,
        onMaxWait: 'fail',
        graceSeconds: 600,
      },
    }),
  );
  const first = syncLocal();
  expect(await first.exit, first.output()).toBe(0);
  await expectInSync();
}, 120_000);

function syncLocal(): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  // The server checks every 100 ms that the client is still there, so a statement whose
  // client was killed is ended and its transaction rolled back (PostgreSQL 14+).
  const pipelineUrl = new URL(ground.targetDb.pipelineUrl);
  pipelineUrl.searchParams.set('options', '-c client_connection_check_interval=100');
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'local/run/sync-local.ts', '--config', configPath],
    {
      env: {
        ...process.env,
        SOURCE_DATABASE_URL: ground.sourceDb.url,
        TARGET_DATABASE_URL: pipelineUrl.href,
        TARGET_ADMIN_URL: ground.targetDb.url,
        LOCAL_S3_DIR: ground.s3Dir,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => output, exit };
}

async function expectInSync(): Promise<void> {
  expect(await rowsOf(ground.target, 'public.orders', 'id')).toEqual(
    await rowsOf(ground.source, 'sales.orders', 'id'),
  );
  // ORDER BY the whole row: a row appended twice would show as two equal lines.
  expect(await rowsOf(ground.target, 'public.log', 't')).toEqual(
    await rowsOf(ground.source, 'sales.log', 't'),
  );
}

async function liveState(): Promise<{ orders: string[]; log: string[]; watermarks: unknown[] }> {
  const { rows: watermarks } = await ground.target.query(
    'SELECT target_table, watermark, full_refresh_reason FROM redshift_sync.watermarks ORDER BY target_table',
  );
  return {
    orders: await rowsOf(ground.target, 'public.orders', 'id'),
    log: await rowsOf(ground.target, 'public.log', 't'),
    watermarks,
  };
}

let round = 0;
/** Orders the last changeSource updated. */
let updatedOrders = 0;
/** A day's change in the source: 1 % of the orders updated, 20 inserted, 30 log lines appended. */
async function changeSource(): Promise<void> {
  round += 1;
  const at = `timestamptz '2026-06-01 00:00:00+00' + ${round} * interval '1 day'`;
  const orders = ROWS + round * 100;
  const updated = await ground.source.query(
    `UPDATE sales.orders SET amount = amount + 1, updated_at = ${at} WHERE id % 100 = ${round}`,
  );
  updatedOrders = updated.rowCount!;
  await ground.source.query(`
    INSERT INTO sales.orders SELECT g, g, ${at} FROM generate_series(${orders + 1}, ${orders + 20}) g;
    INSERT INTO sales.log SELECT max(seq) + g, 'round ${round}' FROM sales.log, generate_series(1, 30) g GROUP BY g;`);
}

async function waitFor(what: string, done: () => Promise<boolean>, run: { output(): string }) {
  const deadline = Date.now() + 60_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`never saw ${what}:\n${run.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The next run succeeds, applies the increment once, and advances both watermarks. */
async function expectNextRunAppliesOnce(before: { watermarks: unknown[] }): Promise<void> {
  const next = syncLocal();
  expect(await next.exit, next.output()).toBe(0);
  const summary: RunSummary = JSON.parse(next.output().trim().split('\n').at(-1)!);
  expect(summary.status).toBe('SUCCEEDED');
  const table = (name: string) => summary.tables.find((t) => t.target === name);
  expect(updatedOrders).toBeGreaterThanOrEqual(ROWS / 100);
  expect(table('public.orders')).toMatchObject({
    mode: 'incremental',
    updated: updatedOrders,
    inserted: 20,
  });
  expect(table('public.log')).toMatchObject({ mode: 'incremental', updated: 0, inserted: 30 });
  await expectInSync();
  const { rows } = await ground.source.query(`SELECT
    (SELECT to_char(max(updated_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM sales.orders) AS orders,
    (SELECT max(seq)::text FROM sales.log) AS log`);
  const after = await liveState();
  expect(after.watermarks).toEqual([
    { target_table: 'log', watermark: rows[0].log, full_refresh_reason: null },
    { target_table: 'orders', watermark: rows[0].orders, full_refresh_reason: null },
  ]);
  expect(after.watermarks).not.toEqual(before.watermarks);
}

describe('an incremental local run killed', () => {
  it.each(['Load each table', 'Check locks on the live tables'])(
    'after the unload (at "%s"): live and the watermarks stay; the next run applies the increment once',
    async (marker) => {
      await changeSource();
      const before = await liveState();
      const run = syncLocal();
      await waitFor(`"${marker}"`, async () => run.output().includes(marker), run);
      run.child.kill('SIGKILL');
      expect(await run.exit).toBeNull(); // killed, not finished
      expect(run.output()).not.toContain('Swap staging into live');
      expect(await liveState()).toEqual(before);
      await expectNextRunAppliesOnce(before);
    },
    120_000,
  );

  it('during the apply, inside the swap: it rolls back, live and the watermarks stay; the next run applies it once', async () => {
    await changeSource();
    const before = await liveState();
    // A row the increment updates, locked by a session of the user's: the swap's UPDATE waits.
    const holder = await ground.targetDb.connect('row lock holder');
    await holder.query('BEGIN');
    await holder.query(`SELECT 1 FROM public.orders WHERE id = ${round} FOR UPDATE`);
    const run = syncLocal();
    const swapping = async () =>
      (
        await ground.target.query<{ pid: number }>(
          `SELECT pid FROM pg_stat_activity
            WHERE datname = current_database() AND wait_event_type = 'Lock'
              AND query LIKE '%redshift_sync.swap(%'`,
        )
      ).rows;
    try {
      await waitFor(
        'the swap waiting inside its transaction',
        async () => {
          return (await swapping()).length > 0;
        },
        run,
      );
      // Inside the swap's transaction, which already wrote to the log (appended first).
      const pid = (await swapping())[0]?.pid;
      const { rows: held } = await ground.target.query(
        `SELECT mode FROM pg_locks WHERE pid = $1 AND relation = 'public.log'::regclass AND granted`,
        [pid],
      );
      expect(held.map((lock: { mode: string }) => lock.mode)).toContain('RowExclusiveLock');
      run.child.kill('SIGKILL');
      expect(await run.exit).toBeNull();
      // The server finds its client gone and ends the statement, rolling the swap back.
      await waitFor('the swap ended', async () => (await swapping()).length === 0, run);
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(await liveState()).toEqual(before);
    await expectNextRunAppliesOnce(before);
  }, 120_000);
});
