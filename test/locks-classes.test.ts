/**
 * Each class of blocker made for real on PostgreSQL, seen by the pipeline's own role as on
 * Aurora, and the per-class onMaxWait acting on them through the lock gate: a forgotten
 * notebook ended, a running report spared, and nobody ended when the run fails anyway.
 * (An anti-wraparound autovacuum cannot be brought about in a test; its class is unit-tested in
 * gate-policy.test.ts.)
 */
import pg from 'pg';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { blockerClass } from '../lambdas/core/locks/classes';
import { inspectLocks, type LockHolder } from '../lambdas/core/locks/inspect';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import { prepareStaging } from '../lambdas/core/swap/engine';
import { swapWhenSafe } from '../lambdas/core/swap/gate';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { LockWaitTimeoutError, type OnMaxWaitSetting } from '../lambdas/core/swap/policy';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('pipeline', 'analyst', 'replicator');
const ANALYST = { user: roles.analyst, password: 'analyst' };
const REPLICATOR = { user: roles.replicator, password: 'replicator' };
const GRACE = 0.3;

let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;
let pipeline: pg.Client;
let tableCount = 0;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  ({ sql, client: pipeline } = await pipelineSession(db, roles.pipeline, []));
  await admin.query(`
    GRANT CREATE, USAGE ON SCHEMA public TO ${roles.pipeline};
    CREATE ROLE ${ANALYST.user} LOGIN PASSWORD '${ANALYST.password}';
    CREATE ROLE ${REPLICATOR.user} LOGIN REPLICATION PASSWORD '${REPLICATOR.password}';
    -- A slow expression index: CREATE INDEX runs as long as the test needs it to.
    CREATE FUNCTION public.slow(x int) RETURNS int LANGUAGE sql IMMUTABLE
      AS 'SELECT x FROM (SELECT pg_sleep(5)) s';
  `);
});

const opened: pg.Client[] = [];
afterEach(async () => {
  await admin.query(
    `SELECT pg_cancel_backend(pid) FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
        AND application_name LIKE 'class %'`,
  );
  await Promise.allSettled(opened.splice(0).map((client) => client.end()));
  const { rows } = await admin.query(
    'SELECT gid FROM pg_prepared_xacts WHERE database = current_database()',
  );
  for (const { gid } of rows) await admin.query(`ROLLBACK PREPARED '${gid.replaceAll("'", "''")}'`);
});

/** A live table owned by the pipeline's role, readable by the analyst and the replicator, and its staging. */
async function liveAndStaging() {
  const name = `t${++tableCount}`;
  const live = { schema: 'public', name };
  await admin.query(`
    CREATE TABLE public.${name} (id int PRIMARY KEY, v text);
    INSERT INTO public.${name} SELECT g, 'old' FROM generate_series(1, 3) g;
    ALTER TABLE public.${name} OWNER TO ${roles.pipeline};
    GRANT SELECT ON public.${name} TO ${ANALYST.user}, ${REPLICATOR.user};
  `);
  const staging = await createStaging(
    pipeline,
    live,
    `${name}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 3) g`,
  );
  await prepareStaging(sql, { live, staging });
  return {
    live,
    quoted: `public.${name}`,
    plan: buildSwapPlan([{ live, staging, strategy: 'rename' }], { runId: name }),
  };
}

async function session(
  kind: string,
  login?: { user: string; password: string },
): Promise<pg.Client> {
  const client = await db.connect(`class ${kind}`, login);
  opened.push(client);
  return client;
}

function pidOf(client: pg.Client): number {
  return (client as pg.Client & { processID: number }).processID;
}

/** Starts a statement that keeps running, and waits until the server shows it active. */
async function keepRunning(client: pg.Client, statement: string): Promise<void> {
  client.query(statement).catch(() => {});
  const pid = pidOf(client);
  for (let tries = 0; tries < 200; tries += 1) {
    const { rows } = await admin.query(
      `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND granted`,
      [pid],
    );
    if (rows.length > 0) return;
    await sleep(25);
  }
  throw new Error(`pid ${pid} never took its locks`);
}

async function holdersOf(quoted: string): Promise<LockHolder[]> {
  await sleep(GRACE * 1000 + 200);
  const [schema, name] = quoted.split('.');
  return inspectLocks(sql, [
    {
      relation: { schema: schema!, name: name! },
      mode: 'AccessExclusiveLock',
      includeDependentViews: false,
    },
  ]);
}

describe('classes of real blockers', () => {
  it('tells a notebook, a report, a prepared transaction, an index build and a dump apart', async () => {
    const table = await liveAndStaging();
    const notebook = await session('notebook', ANALYST);
    await notebook.query(`BEGIN; SELECT * FROM ${table.quoted}`);
    const report = await session('report', ANALYST);
    await keepRunning(report, `SELECT pg_sleep(60) FROM ${table.quoted} LIMIT 1`);
    const twoPhase = await session('two-phase');
    await twoPhase.query(`BEGIN; SELECT * FROM ${table.quoted}; PREPARE TRANSACTION 'class test'`);
    const indexer = await session('indexer');
    await keepRunning(indexer, `CREATE INDEX ON ${table.quoted} (public.slow(id))`);
    // pg_dump's own application_name, as it sets it when the user gives none.
    const dump = await db.connect('pg_dump', ANALYST);
    opened.push(dump);
    await dump.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT * FROM ${table.quoted}`);

    const holders = await holdersOf(table.quoted);
    const classOf = (pid: number | null) =>
      holders.filter((holder) => holder.pid === pid).map(blockerClass);
    expect(classOf(pidOf(notebook))).toEqual(['idleInTransaction']);
    expect(classOf(pidOf(report))).toEqual(['activeQuery']);
    expect(classOf(null)).toEqual(['preparedTransaction']);
    expect(classOf(pidOf(indexer))).toEqual(['maintenance']);
    expect(holders.find((holder) => holder.pid === pidOf(indexer))).toMatchObject({
      maintenanceCommand: 'CREATE INDEX',
      backendType: 'client backend',
    });
    expect(classOf(pidOf(dump))).toEqual(['replicationOrBackup']);

    const verdict = lockVerdict(holders, { graceSeconds: GRACE });
    const sentences = verdict.safe ? [] : verdict.blockers.map((blocker) => blocker.reason);
    expect(sentences).toHaveLength(5);
    expect(sentences).toContainEqual(
      expect.stringMatching(
        /^maintenance: pid \d+ \(user postgres, application "class indexer", from 127\.0\.0\.1, running CREATE INDEX\) has held ShareLock/,
      ),
    );
  });

  it('classes a session on a replication connection (a walsender) as replicationOrBackup', async () => {
    const table = await liveAndStaging();
    // A logical replication connection runs SQL too, as a subscriber copying a table does
    // (https://www.postgresql.org/docs/current/protocol-replication.html).
    const url = new URL(db.url);
    const walsender = new pg.Client({
      host: url.hostname,
      port: Number(url.port),
      database: db.name,
      user: REPLICATOR.user,
      password: REPLICATOR.password,
      application_name: 'class subscriber',
      replication: 'database',
    } as pg.ClientConfig);
    walsender.on('error', () => {});
    await walsender.connect();
    opened.push(walsender);
    await walsender.query(`BEGIN`);
    await walsender.query(`SELECT * FROM ${table.quoted}`);

    const holders = await holdersOf(table.quoted);
    expect(holders).toEqual([
      expect.objectContaining({ backendType: 'walsender', pid: pidOf(walsender) }),
    ]);
    expect(holders.map(blockerClass)).toEqual(['replicationOrBackup']);
  });
});

describe('the per-class onMaxWait through the lock gate', () => {
  const gate = (onMaxWait: OnMaxWaitSetting) => ({
    graceSeconds: GRACE,
    pollIntervalSeconds: 0.2,
    maxWaitSeconds: 1,
    onMaxWait,
  });
  const alive = async (pid: number) =>
    (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length === 1;
  const liveValues = async (quoted: string) =>
    (await admin.query(`SELECT DISTINCT v FROM ${quoted}`)).rows.map((row) => row.v);

  it('ends a notebook whose class says terminate, and swaps', async () => {
    const table = await liveAndStaging();
    const notebook = await session('notebook', ANALYST);
    await notebook.query(`BEGIN; SELECT * FROM ${table.quoted}`);

    const outcome = await swapWhenSafe(
      sql,
      table.plan,
      gate({ idleInTransaction: 'terminate', activeQuery: 'fail' }),
    );

    expect(outcome.terminated).toEqual([
      expect.objectContaining({
        pid: pidOf(notebook),
        blockerClass: 'idleInTransaction',
        outcome: 'terminated',
      }),
    ]);
    expect(await alive(pidOf(notebook))).toBe(false);
    expect(await liveValues(table.quoted)).toEqual(['new']);
  });

  it('ends nobody when a running report says fail, and fails naming both with their class', async () => {
    const table = await liveAndStaging();
    const notebook = await session('notebook', ANALYST);
    await notebook.query(`BEGIN; SELECT * FROM ${table.quoted}`);
    const report = await session('report', ANALYST);
    await keepRunning(report, `SELECT pg_sleep(60) FROM ${table.quoted} LIMIT 1`);

    const error = await swapWhenSafe(
      sql,
      table.plan,
      gate({ idleInTransaction: 'terminate', activeQuery: 'fail' }),
    ).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    const message = (error as Error).message;
    expect(message).toMatch(
      /\n- idleInTransaction: pid \d+ \(user \w+, application "class notebook"/,
    );
    expect(message).toMatch(/\n- activeQuery: pid \d+ \(user \w+, application "class report"/);
    expect(message).toContain(
      `nobody was terminated: onMaxWait fails the run for pid ${pidOf(report)} (activeQuery), so ending pid ${pidOf(notebook)} (idleInTransaction) would not have let the swap through`,
    );
    expect(await alive(pidOf(notebook))).toBe(true);
    expect(await alive(pidOf(report))).toBe(true);
    expect(await liveValues(table.quoted)).toEqual(['old']);
  });

  it('with the single "terminate", ends nobody when a prepared transaction blocks too', async () => {
    const table = await liveAndStaging();
    const notebook = await session('notebook', ANALYST);
    await notebook.query(`BEGIN; SELECT * FROM ${table.quoted}`);
    const twoPhase = await session('two-phase');
    await twoPhase.query(`BEGIN; SELECT * FROM ${table.quoted}; PREPARE TRANSACTION 'class gate'`);

    const error = await swapWhenSafe(sql, table.plan, gate('terminate')).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(LockWaitTimeoutError);
    expect((error as Error).message).toContain(
      'nobody was terminated: onMaxWait fails the run for prepared transaction class gate (preparedTransaction: preparedTransaction is never terminated)',
    );
    expect(await alive(pidOf(notebook))).toBe(true);
    expect(await liveValues(table.quoted)).toEqual(['old']);
  });
});
