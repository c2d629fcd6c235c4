/**
 * A `truncate` or `merge` swap copies rows inside the swap statement, which on a large table
 * outlasts the RDS Data API's 45 s per call. Over a transport that cuts calls off (scaled
 * down: 200 ms), such a swap is sent with continueAfterTimeout and followed in the database
 * until it commits or ends. The copy is made slow deterministically by a user's statement
 * trigger on the live table (it fires on the swap's INSERT), not by the table's size.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { DataApiTimeoutError } from '../lambdas/core/load/errors';
import { installSchema } from '../lambdas/core/schema/install';
import {
  attemptSwap,
  type FollowCutOff,
  prepareStaging,
  SwapCutOffEndedError,
  SwapStillRunningError,
} from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { preflight } from '../lambdas/core/swap/preflight';
import type { SwapStrategy, TableSwap } from '../lambdas/core/swap/types';
import { CutOffSqlClient } from './support/data-api-cutoff';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, uniqueRoles } from './support/swap-fixtures';

const CUT_OFF_MS = 200;
const roles = uniqueRoles('owner');

let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;
let pool: pg.Pool;
let cutOff: CutOffSqlClient;
let tableCount = 0;

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test setup');
  await admin.query(`
    CREATE ROLE ${roles.owner} NOLOGIN;
    GRANT ${roles.owner} TO ${db.pipelineLogin.user};
    GRANT USAGE, CREATE ON SCHEMA public TO ${roles.owner}, ${db.pipelineLogin.user};
  `);
  pipeline = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sql = new PgSqlClient(pipeline);
  await installSchema(sql);
  pool = new pg.Pool({ connectionString: db.pipelineUrl, application_name: 'cut-off', max: 10 });
  cutOff = new CutOffSqlClient(pool, CUT_OFF_MS);
});

afterAll(async () => {
  await cutOff?.settle();
  await pool?.end();
  await pipeline?.end();
  await admin?.end();
});

/**
 * A live table of 100 'old' rows whose owner's statement trigger makes every write to it take
 * `triggerSql`'s time, and a staging table of 100 'new' rows, prepared for the swap.
 */
async function slowTable(strategy: SwapStrategy, triggerSql: string): Promise<TableSwap> {
  tableCount += 1;
  const live: QualifiedName = { schema: 'public', name: `slow_${tableCount}` };
  await admin.query(`
    SET ROLE ${roles.owner};
    CREATE TABLE public.${live.name} (id int PRIMARY KEY, v text);
    INSERT INTO public.${live.name} SELECT g, 'old' FROM generate_series(1, 100) g;
    CREATE FUNCTION public.${live.name}_slow() RETURNS trigger LANGUAGE plpgsql
      AS $$ BEGIN ${triggerSql}; RETURN NULL; END $$;
    CREATE TRIGGER slow AFTER INSERT ON public.${live.name}
      FOR EACH STATEMENT EXECUTE FUNCTION public.${live.name}_slow();
    RESET ROLE;
  `);
  const staging = await createStaging(
    pipeline,
    live,
    `slow_${tableCount}_staging`,
    `SELECT g, 'new' FROM generate_series(1, 100) g`,
  );
  const table: TableSwap = {
    live,
    staging,
    strategy,
    ...(strategy === 'merge' ? { primaryKey: ['id'] } : {}),
  };
  await preflight(sql, [table], { withStaging: true });
  await prepareStaging(sql, table);
  return table;
}

function following(deadlineMs: number): FollowCutOff & { looks: number } {
  const follow = {
    looks: 0,
    deadline: Date.now() + deadlineMs,
    pollIntervalMs: 100,
    now: Date.now,
    sleep: async (ms: number) => {
      follow.looks += 1;
      await new Promise((resolve) => setTimeout(resolve, ms));
    },
  };
  return follow;
}

async function values(table: TableSwap): Promise<string[]> {
  const { rows } = await admin.query<{ v: string }>(
    `SELECT DISTINCT v FROM public.${table.live.name} ORDER BY v`,
  );
  return rows.map((row) => row.v);
}

describe('a truncate or merge swap that outlasts the Data API call', () => {
  it.each<SwapStrategy>(['truncate', 'merge'])(
    '%s: goes on after the cut-off and is followed until it commits',
    async (strategy) => {
      const table = await slowTable(strategy, 'PERFORM pg_sleep(1.5)');
      const follow = following(60_000);
      const cutOffsBefore = cutOff.cutOffs.length;
      const outcome = await attemptSwap(
        cutOff,
        buildSwapPlan([table], { runId: `follow-${strategy}` }),
        follow,
      );
      expect(outcome).toMatchObject({ status: 'swapped', alreadySwapped: false });
      expect(cutOff.cutOffs.slice(cutOffsBefore)).toEqual([
        expect.objectContaining({ longRunning: true }),
      ]);
      expect(follow.looks).toBeGreaterThan(0);
      expect(await values(table)).toEqual(['new']);
    },
  );

  it('without following (a short call, as rename is sent), the cut-off cancels the copy: nothing is published', async () => {
    const table = await slowTable('truncate', 'PERFORM pg_sleep(1.5)');
    const error = await attemptSwap(cutOff, buildSwapPlan([table], { runId: 'no-follow' })).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(DataApiTimeoutError);
    expect(await values(table)).toEqual(['old']);
  });

  it('reports a cut-off swap that then rolled back, leaving live as it was', async () => {
    const table = await slowTable(
      'truncate',
      "PERFORM pg_sleep(1); RAISE EXCEPTION 'refused by the owner''s trigger'",
    );
    const error = await attemptSwap(
      cutOff,
      buildSwapPlan([table], { runId: 'follow-rolled-back' }),
      following(60_000),
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SwapCutOffEndedError);
    expect((error as Error).message).toMatch(/ended without committing.*nothing changed/);
    expect(await values(table)).toEqual(['old']);
  });

  it('gives up when the step’s time is up, saying the swap goes on in Aurora', async () => {
    const table = await slowTable('truncate', 'PERFORM pg_sleep(3)');
    const error = await attemptSwap(
      cutOff,
      buildSwapPlan([table], { runId: 'follow-out-of-time' }),
      following(500),
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SwapStillRunningError);
    expect((error as Error).message).toMatch(/still copying rows .* goes on in Aurora/);
    await cutOff.settle();
    // It did go on, and committed by itself.
    expect(await values(table)).toEqual(['new']);
  });
});
