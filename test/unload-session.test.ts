/**
 * Any number of tables from one Redshift snapshot: the unload's calls (at most 40 statements
 * each) run on one Data API session inside one transaction. Proven on the local warehouse,
 * whose sessions keep one connection (REPEATABLE READ) between calls, and through the whole
 * local run.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { StatementState, Warehouse } from '../lambdas/core/transfer/ports';
import { TRANSACTION_START_SQL } from '../lambdas/core/unload/statement';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { LocalWarehouse, LocalWarehouseError } from '../local/emulators/local-warehouse';
import { localDeps } from '../local/run/deps';
import { runLocalPipeline } from '../local/run/pipeline';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

let ground: DatabasesAndBucket;
const TABLES = 40;
const names = Array.from(
  { length: TABLES },
  (_, index) => `t${String(index + 1).padStart(2, '0')}`,
);

async function settle(warehouse: Warehouse, id: string): Promise<StatementState> {
  for (let attempt = 0; attempt < 2000; attempt += 1) {
    const state = await warehouse.describe(id);
    if (state.state !== 'running') return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`statement ${id} did not finish`);
}

beforeAll(async () => {
  ground = await databasesAndBucket('unload-session-bucket');
  await ground.source.query('CREATE SCHEMA sales; CREATE TABLE sales.probe (v text)');
  for (const name of names) {
    await ground.source.query(`CREATE TABLE sales.${name} (id bigint, v text)`);
    await ground.target.query(`CREATE TABLE public.${name} (id bigint, v text);
                        ALTER TABLE public.${name} OWNER TO ${ground.owner}`);
  }
});

describe('a local warehouse session', () => {
  it('keeps a BEGIN open across calls: one snapshot and one transaction start, until COMMIT', async () => {
    await ground.source.query("TRUNCATE sales.probe; INSERT INTO sales.probe VALUES ('before')");
    const warehouse = new LocalWarehouse({ sourceUrl: ground.sourceDb.url, s3Dir: ground.s3Dir });
    try {
      const first = await warehouse.submitInSession(
        ['BEGIN', TRANSACTION_START_SQL, 'SELECT count(*)::int AS n FROM sales.probe'],
        'first',
        { keepAliveSeconds: 60 },
      );
      // A session runs one call at a time.
      await expect(
        warehouse.submitInSession(['SELECT 1'], 'too early', { sessionId: first.sessionId }),
      ).rejects.toThrow(LocalWarehouseError);
      expect(await settle(warehouse, first.statementId)).toMatchObject({ state: 'done' });
      await ground.source.query("INSERT INTO sales.probe VALUES ('committed between calls')");
      const second = await warehouse.submitInSession(
        [TRANSACTION_START_SQL, 'SELECT count(*)::int AS n FROM sales.probe', 'COMMIT'],
        'second',
        { sessionId: first.sessionId },
      );
      expect(second.sessionId).toBe(first.sessionId);
      expect(await settle(warehouse, second.statementId)).toMatchObject({ state: 'done' });
      expect(await warehouse.fetchRows(second.statementId, 0)).toEqual(
        await warehouse.fetchRows(first.statementId, 1),
      );
      expect(await warehouse.fetchRows(second.statementId, 1)).toEqual([{ n: 1 }]);
      // After COMMIT the session's next transaction sees the row.
      const third = await warehouse.submitInSession(
        ['SELECT count(*)::int AS n FROM sales.probe'],
        'third',
        { sessionId: first.sessionId },
      );
      await settle(warehouse, third.statementId);
      expect(await warehouse.fetchRows(third.statementId, 0)).toEqual([{ n: 2 }]);
    } finally {
      await warehouse.close();
    }
  });

  it('refuses a session id it never opened', async () => {
    const warehouse = new LocalWarehouse({ sourceUrl: ground.sourceDb.url, s3Dir: ground.s3Dir });
    try {
      await expect(
        warehouse.submitInSession(['SELECT 1'], 'nowhere', { sessionId: 'no-such-session' }),
      ).rejects.toThrow(/no open session has id "no-such-session"/);
    } finally {
      await warehouse.close();
    }
  });
});

const CONFIG = {
  tables: names.map((name) => ({
    source: `sales.${name}`,
    target: `public.${name}`,
    strategy: 'rename',
  })),
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
};

/**
 * Runs the pipeline locally; `beforeLaterCall` runs just before each unload call after the
 * first is submitted on the session (between calls of the one transaction).
 */
async function runWith(
  beforeLaterCall: (warehouse: Warehouse, sessionId: string) => Promise<void>,
): Promise<{ summary: RunSummary; laterCalls: number }> {
  const deps = await localDeps({
    ...ground.runOn,
    onLog: () => {},
  });
  const { warehouse } = deps;
  const submit = warehouse.submitInSession.bind(warehouse);
  let laterCalls = 0;
  const watched: Warehouse['submitInSession'] = async (statements, name, session) => {
    if ('sessionId' in session && statements[0] === TRANSACTION_START_SQL) {
      laterCalls += 1;
      await beforeLaterCall(warehouse, session.sessionId);
    }
    return submit(statements, name, session);
  };
  Object.assign(warehouse, { submitInSession: watched });
  try {
    const summary = (await runLocalPipeline({
      config: parseRuntimeConfig(CONFIG, 'test config'),
      request: {},
      deps,
      onProgress: () => {},
    })) as RunSummary;
    return { summary, laterCalls };
  } finally {
    await deps.close();
  }
}

async function liveValue(name: string): Promise<string[]> {
  const { rows } = await ground.target.query<{ v: string }>(
    `SELECT v FROM public.${name} ORDER BY id`,
  );
  return rows.map((row) => row.v);
}

describe(`a run of ${TABLES} tables`, () => {
  it('unloads them all from one snapshot: a change committed between calls reaches neither table', async () => {
    for (const name of names) {
      await ground.source.query(
        `TRUNCATE sales.${name}; INSERT INTO sales.${name} VALUES (1, 'old')`,
      );
    }
    // t01 is unloaded by the first call, t40 by the last: a user's transaction changes both
    // while the unload is between its calls.
    const { summary, laterCalls } = await runWith(async () => {
      await ground.source.query(`BEGIN;
        UPDATE sales.t01 SET v = 'new'; UPDATE sales.t40 SET v = 'new';
        COMMIT`);
    });
    expect(summary.status).toBe('SUCCEEDED');
    expect(laterCalls).toBeGreaterThanOrEqual(2);
    expect(await liveValue('t01')).toEqual(['old']);
    expect(await liveValue('t40')).toEqual(['old']);
    expect(await liveValue('t20')).toEqual(['old']);
  }, 300_000);

  it('fails the run, touching no live table, when a call ran in another transaction', async () => {
    for (const name of names) {
      await ground.source.query(
        `TRUNCATE sales.${name}; INSERT INTO sales.${name} VALUES (1, 'second')`,
      );
    }
    // As if the Data API had committed the session's transaction between two calls.
    const { summary } = await runWith(async (warehouse, sessionId) => {
      const id = (
        await warehouse.submitInSession(['COMMIT', 'BEGIN'], 'sneaky commit', { sessionId })
      ).statementId;
      await settle(warehouse, id);
    }).catch((error: unknown) => ({ summary: { status: 'THREW', error } as never }));
    expect(summary).toMatchObject({ status: 'FAILED' });
    expect(JSON.stringify(summary)).toMatch(/not in the first call's .*one snapshot/);
    expect(await liveValue('t01')).toEqual(['old']);
  }, 300_000);
});
