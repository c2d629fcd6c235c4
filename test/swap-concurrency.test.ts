/**
 * The swap under concurrent sessions on real PostgreSQL: waiting for long holders without
 * queueing readers, not starving under a stream of short readers, all-or-nothing across
 * tables, and changing nothing when it gives up.
 */
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { swapWhenSafe } from '../lambdas/core/swap/gate';
import { COLLISIONS_BEFORE_BLOCKER } from '../lambdas/core/swap/gate-decision';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError } from '../lambdas/core/swap/policy';
import type { SwapStrategy } from '../lambdas/core/swap/types';
import { backToBackReaders } from './support/back-to-back-readers';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('pipeline');
let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;
let pipeline: pg.Client;
let pipelineLogin: { user: string; password: string };
const poolLogin = () => ({ user: pipelineLogin.user, password: pipelineLogin.password });
let tableCount = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A live table with 1000 rows and a view on it, and a staging table with 500 new rows. */
async function liveAndStaging(strategy: SwapStrategy = 'rename', name = `t${++tableCount}`) {
  const live: QualifiedName = { schema: 'public', name };
  const quoted = `public."${name.replaceAll('"', '""')}"`;
  await admin.query(`CREATE TABLE ${quoted} (id int PRIMARY KEY, v text)`);
  await admin.query(`INSERT INTO ${quoted} SELECT g, 'old' FROM generate_series(1, 1000) g`);
  const view = `public."${name.replaceAll('"', '""')} view"`;
  await admin.query(`CREATE VIEW ${view} AS SELECT id, v FROM ${quoted}`);
  await admin.query(`ALTER TABLE ${quoted} OWNER TO ${roles.pipeline}`);
  await admin.query(`ALTER VIEW ${view} OWNER TO ${roles.pipeline}`);
  const staging = await createStaging(
    pipeline,
    live,
    `${name}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 500) g`,
  );
  await prepareStaging(sql, { live, staging });
  return {
    live,
    staging,
    quoted,
    plan: (runId: string) =>
      buildSwapPlan([{ live, staging, strategy, primaryKey: ['id'] }], { runId }),
  };
}

/**
 * Reads the table every `intervalMs` on its own session until stopped; records how long each
 * read spent in the server, lock wait included (from the statement's arrival to the end of its
 * execution). Measured there rather than around the call, so that this process's own pauses on
 * a loaded machine do not count as waiting behind the swap.
 */
async function prober(quoted: string, intervalMs: number) {
  const client = await db.connect('prober');
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{ ms: number }>(
        `SELECT count(*), max(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::float8 AS ms FROM ${quoted}`,
      );
      latencies.push(rows[0]!.ms);
      await sleep(intervalMs);
    }
  })();
  return {
    latencies,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** A user's login (not a superuser, which the pipeline may not end) that may edit `quoted`. */
async function editorOf(quoted: string): Promise<{ user: string; password: string }> {
  const editor = { user: `editor_${roles.pipeline.split('_')[1]}`, password: 'editor' };
  await admin.query(`DO $$ BEGIN CREATE ROLE ${editor.user} LOGIN PASSWORD '${editor.password}';
    EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  await admin.query(`GRANT USAGE ON SCHEMA public TO ${editor.user}`);
  await admin.query(`GRANT SELECT, UPDATE ON ${quoted} TO ${editor.user}`);
  return editor;
}

async function count(quoted: string): Promise<{ n: number; v: string }> {
  const { rows } = await admin.query(`SELECT count(*)::int AS n, min(v) AS v FROM ${quoted}`);
  return rows[0];
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  ({ sql, client: pipeline, login: pipelineLogin } = await pipelineSession(db, roles.pipeline, []));
  await admin.query(`GRANT CREATE, USAGE ON SCHEMA public TO ${roles.pipeline}`);
});

describe('swap under concurrent sessions', () => {
  it('waits for a long reader without making other readers wait longer than lock_timeout', async () => {
    const table = await liveAndStaging();
    const longReader = await db.connect('long-report');
    await longReader.query('BEGIN');
    await longReader.query(`SELECT count(*) FROM ${table.quoted}`);
    const probe = await prober(table.quoted, 50);
    const releaseAt = performance.now() + 3000;
    const release = sleep(3000).then(() => longReader.query('COMMIT'));

    const outcome = await swapWhenSafe(sql, table.plan('long-reader'), {
      graceSeconds: 0.5,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 30,
    });
    const swappedAt = performance.now();
    await release;
    await probe.stop();

    expect(swappedAt).toBeGreaterThanOrEqual(releaseAt - 50);
    expect(outcome.blockersSeen.map((b) => b.holder.applicationName)).toContain('long-report');
    expect(outcome.blockersSeen[0]!.reason).toMatch(/idle|open transaction/);
    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
    expect(probe.latencies.length).toBeGreaterThan(30);
    // lock_timeout is 50 ms by default: no reader queued behind the swap for much longer (the
    // swap's own hold and generous scheduling slack on a shared machine).
    expect(Math.max(...probe.latencies)).toBeLessThan(200 + 150);
  });

  it('is not starved by 50 short readers a second', async () => {
    const table = await liveAndStaging();
    const readers = await Promise.all([1, 2, 3, 4, 5].map(() => db.connect('dashboard')));
    let running = true;
    let reads = 0;
    const load = readers.map(async (reader, index) => {
      await sleep(index * 20);
      while (running) {
        // Each reader: a 30 ms query every 100 ms; five of them make 50 a second.
        await reader.query(`SELECT count(*), pg_sleep(0.03) FROM ${table.quoted}`);
        reads += 1;
        await sleep(70);
      }
    });
    await sleep(300);

    const started = performance.now();
    const outcome = await swapWhenSafe(sql, table.plan('busy-table'), { maxWaitSeconds: 20 });
    const tookMs = performance.now() - started;
    running = false;
    await Promise.all(load);

    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
    expect(reads).toBeGreaterThan(10);
    expect(outcome.blockersSeen).toEqual([]);
    expect(tookMs).toBeLessThan(10_000);
  });

  it('ends an idle-in-transaction session with onMaxWait "terminate", and logs who it was', async () => {
    const table = await liveAndStaging();
    // pg_signal_backend may end any session but a superuser's: this one is an analyst's.
    const analyst = `analyst_${roles.pipeline.split('_')[1]}`;
    await admin.query(`CREATE ROLE ${analyst} LOGIN PASSWORD 'analyst'`);
    await admin.query(`GRANT SELECT ON ${table.quoted} TO ${analyst}`);
    const forgotten = await db.connect('forgotten-notebook', {
      user: analyst,
      password: 'analyst',
    });
    await forgotten.query('BEGIN');
    await forgotten.query(`SELECT * FROM ${table.quoted} LIMIT 1`);
    const { rows } = await forgotten.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');

    const outcome = await swapWhenSafe(sql, table.plan('terminate'), {
      graceSeconds: 0.3,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 1,
      onMaxWait: 'terminate',
    });

    expect(outcome.terminated).toEqual([
      expect.objectContaining({
        pid: rows[0]!.pid,
        applicationName: 'forgotten-notebook',
        terminated: true,
      }),
    ]);
    const { rows: alive } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [
      rows[0]!.pid,
    ]);
    expect(alive).toEqual([]);
    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
  });

  it('gives up after maxWaitSeconds with onMaxWait "fail", naming the blocker and changing nothing', async () => {
    const table = await liveAndStaging();
    const holder = await db.connect('nightly-export');
    await holder.query('BEGIN');
    await holder.query(`SELECT count(*) FROM ${table.quoted}`);

    const error = await swapWhenSafe(sql, table.plan('give-up'), {
      graceSeconds: 0.2,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 1,
    }).catch((e: unknown) => e);
    await holder.query('ROLLBACK');

    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    expect((error as Error).message).toMatch(/live tables are unchanged.*\n- .*nightly-export/s);
    expect(await count(table.quoted)).toEqual({ n: 1000, v: 'old' });
    expect(await count(`redshift_sync_staging."${table.live.name}_staging"`)).toEqual({
      n: 500,
      v: 'new',
    });
  });

  it('names back-to-back short readers that make every attempt time out, and ends within maxWaitSeconds (onMaxWait "fail")', async () => {
    const table = await liveAndStaging();
    const readers = await backToBackReaders(db, table.quoted, admin);
    let busy = 0;

    const started = performance.now();
    const error = await swapWhenSafe(
      sql,
      buildSwapPlan([{ live: table.live, staging: table.staging, strategy: 'rename' }], {
        runId: 'back-to-back-fail',
        lockTimeoutMs: 200,
      }),
      { graceSeconds: 2, pollIntervalSeconds: 0.2, maxWaitSeconds: 3 },
      {
        onProgress: (progress) => {
          if (progress.kind === 'busy') busy += 1;
        },
      },
    ).catch((e: unknown) => e);
    const tookSeconds = (performance.now() - started) / 1000;
    await readers.stop();

    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    expect((error as Error).message).toMatch(
      /application "back-to-back".*it held the lock through \d+ swap attempts/,
    );
    // Without the collision rule it kept attempting and never named anyone.
    expect(busy).toBeGreaterThanOrEqual(3);
    expect(tookSeconds).toBeLessThan(3 + 10);
    expect(await count(table.quoted)).toEqual({ n: 1000, v: 'old' });
  });

  it('ends back-to-back short readers that make every attempt time out, then swaps (onMaxWait "terminate")', async () => {
    const table = await liveAndStaging();
    const analyst = `looper_${roles.pipeline.split('_')[1]}`;
    await admin.query(`CREATE ROLE ${analyst} LOGIN PASSWORD 'looper'`);
    await admin.query(`GRANT SELECT ON ${table.quoted} TO ${analyst}`);
    const readers = await backToBackReaders(db, table.quoted, admin, {
      user: analyst,
      password: 'looper',
    });

    const started = performance.now();
    const outcome = await swapWhenSafe(
      sql,
      buildSwapPlan([{ live: table.live, staging: table.staging, strategy: 'rename' }], {
        runId: 'back-to-back-terminate',
        lockTimeoutMs: 200,
      }),
      { graceSeconds: 2, pollIntervalSeconds: 0.2, maxWaitSeconds: 3, onMaxWait: 'terminate' },
    );
    const tookSeconds = (performance.now() - started) / 1000;
    const ends = await readers.stop();

    expect(tookSeconds).toBeLessThan(3 + 10);
    expect(outcome.terminated.filter((record) => record.terminated).map((r) => r.pid)).toEqual(
      expect.arrayContaining([expect.toBeOneOf(readers.pids)]),
    );
    expect(ends).toContain('ended by the server');
    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
  });

  it('swaps two tables all or nothing: a lock timeout on one leaves both as they were', async () => {
    const first = await liveAndStaging();
    const second = await liveAndStaging('truncate');
    const holder = await db.connect('holder');
    await holder.query('BEGIN');
    await holder.query(`SELECT count(*) FROM ${second.quoted}`);
    const plan = buildSwapPlan(
      [
        { live: first.live, staging: first.staging, strategy: 'rename' },
        { live: second.live, staging: second.staging, strategy: 'truncate' },
      ],
      { runId: 'pair' },
    );

    const busy = await attemptSwap(sql, plan);
    expect(busy).toMatchObject({ status: 'busy', reason: 'lock timeout' });
    expect(await count(first.quoted)).toEqual({ n: 1000, v: 'old' });
    expect(await count(second.quoted)).toEqual({ n: 1000, v: 'old' });

    await holder.query('COMMIT');
    expect(await attemptSwap(sql, plan)).toMatchObject({ status: 'swapped' });
    expect(await count(first.quoted)).toEqual({ n: 500, v: 'new' });
    expect(await count(second.quoted)).toEqual({ n: 500, v: 'new' });
  });

  it('reports a deadlock as busy and changes nothing', async () => {
    const first = await liveAndStaging('rename', 'a_deadlock');
    const second = await liveAndStaging('rename', 'b_deadlock');
    const other = await db.connect('other-writer');
    await other.query('BEGIN');
    await other.query(`LOCK TABLE ${second.quoted} IN ROW EXCLUSIVE MODE`);
    const plan = buildSwapPlan(
      [
        { live: first.live, staging: first.staging, strategy: 'rename' },
        { live: second.live, staging: second.staging, strategy: 'rename' },
      ],
      // Longer than deadlock_timeout (1 s), so PostgreSQL's deadlock check runs first.
      { runId: 'deadlock', lockTimeoutMs: 5000 },
    );
    // The swap locks a_deadlock, then waits for b_deadlock; the other session then wants a_deadlock.
    const swap = attemptSwap(sql, plan);
    await sleep(300);
    const otherRead = other.query(`SELECT count(*) FROM ${first.quoted}`).then(
      () => 'read',
      (error: { code: string }) => error.code,
    );

    expect(await swap).toMatchObject({ status: 'busy', reason: 'deadlock' });
    expect(await otherRead).toBe('read');
    await other.query('COMMIT');
    expect(await count(first.quoted)).toEqual({ n: 1000, v: 'old' });
    expect(await count(second.quoted)).toEqual({ n: 1000, v: 'old' });
  });

  it('merges while a long reader holds the table: merge needs no exclusive lock', async () => {
    const table = await liveAndStaging('merge');
    const longReader = await db.connect('long-report');
    await longReader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await longReader.query(`SELECT count(*) FROM ${table.quoted}`);

    const outcome = await swapWhenSafe(sql, table.plan('merge'), {
      graceSeconds: 0,
      maxWaitSeconds: 5,
    });

    expect(outcome.blockersSeen).toEqual([]);
    expect(outcome.result.tables[0]!.result).toEqual({ inserted: 0, updated: 500, deleted: 500 });
    // The reader's snapshot still sees the old rows until it ends; everyone else sees the new.
    expect(
      (await longReader.query(`SELECT count(*)::int AS n FROM ${table.quoted}`)).rows[0].n,
    ).toBe(1000);
    await longReader.query('COMMIT');
    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
  });

  it('waits for a session sitting on a row lock the merge needs, and names it (onMaxWait "fail")', async () => {
    const table = await liveAndStaging('merge');
    const rowLocker = await db.connect('row locker', await editorOf(table.quoted));
    await rowLocker.query('BEGIN');
    await rowLocker.query(`SELECT * FROM ${table.quoted} WHERE id = 3 FOR UPDATE`);
    await sleep(600);

    const failure = await swapWhenSafe(sql, table.plan('merge-row-lock-fail'), {
      graceSeconds: 0.5,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 1.5,
    }).catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(LockWaitTimeoutError);
    expect((failure as Error).message).toMatch(
      /application "row locker".*idle.*it may hold row locks the merge needs/,
    );
    expect(await count(table.quoted)).toEqual({ n: 1000, v: 'old' });
    await rowLocker.query('ROLLBACK');
  });

  it('ends a session sitting on a row lock the merge needs, then merges (onMaxWait "terminate")', async () => {
    const table = await liveAndStaging('merge');
    const rowLocker = await db.connect('row locker', await editorOf(table.quoted));
    await rowLocker.query('BEGIN');
    await rowLocker.query(`UPDATE ${table.quoted} SET v = 'edited' WHERE id = 3`);
    await sleep(600);

    const outcome = await swapWhenSafe(sql, table.plan('merge-row-lock-terminate'), {
      graceSeconds: 0.5,
      pollIntervalSeconds: 0.2,
      maxWaitSeconds: 1,
      onMaxWait: 'terminate',
    });

    expect(outcome.terminated).toEqual([
      expect.objectContaining({ applicationName: 'row locker', outcome: 'terminated' }),
    ]);
    expect(await count(table.quoted)).toEqual({ n: 500, v: 'new' });
  });

  it('says whom a busy merge attempt waited for, and then waits for that session', async () => {
    const table = await liveAndStaging('merge');
    // Attempt and watch side by side need two connections, as the Data API gives them.
    const pool = new pg.Pool({ connectionString: db.url, ...poolLogin(), max: 4 });
    const pooled = new PgSqlClient(pool);
    const rowLocker = await db.connect('young row locker', await editorOf(table.quoted));
    await rowLocker.query('BEGIN');
    await rowLocker.query(`SELECT * FROM ${table.quoted} WHERE id = 3 FOR UPDATE`);
    const lockerPid = (await rowLocker.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const busy: string[] = [];
    try {
      // Younger than a 60 s grace, the locker is not a blocker until attempts keep timing out
      // behind it; each busy attempt names it.
      const failure = await swapWhenSafe(
        pooled,
        { ...table.plan('merge-row-lock-watched'), lockTimeoutMs: 400 },
        { graceSeconds: 60, pollIntervalSeconds: 0.2, maxWaitSeconds: 4 },
        { onProgress: (progress) => progress.kind === 'busy' && busy.push(progress.message!) },
      ).catch((error: unknown) => error);
      expect(busy.length).toBeGreaterThanOrEqual(COLLISIONS_BEFORE_BLOCKER);
      for (const message of busy) {
        expect(message).toMatch(
          new RegExp(
            `lock timeout.*it waited for pid ${lockerPid} \\(user [^,]+, application "young row locker"\\)`,
          ),
        );
      }
      expect(failure).toBeInstanceOf(LockWaitTimeoutError);
      expect((failure as Error).message).toContain(`pid ${lockerPid}`);
      expect(await count(table.quoted)).toEqual({ n: 1000, v: 'old' });
    } finally {
      await rowLocker.query('ROLLBACK');
      await pool.end();
    }
  });

  it('handles names with capitals, spaces and quotes', async () => {
    const table = await liveAndStaging('rename', 'Order "Items" 2024');
    const outcome = await swapWhenSafe(sql, table.plan('quoted'), { maxWaitSeconds: 5 });
    expect(outcome.result.tables[0]!.result).toMatchObject({ viewsRepointed: 1 });
    expect(await count(`"Order ""Items"" 2024 view"`)).toEqual({ n: 500, v: 'new' });
  });
});
