/**
 * An increment whose swap fails its whole-table proof: answered directly, the table is marked
 * for a full refresh by name; cut off by the Data API first (scaled down: 200 ms) and then
 * rolled back, with its error only in the server's log, every increment of that swap is marked,
 * so the next run takes them whole instead of meeting the same mismatch every run. The swap is
 * made slow deterministically by a user's statement trigger on the live table.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { installSchema } from '../lambdas/core/schema/install';
import type { SqlClient } from '../lambdas/core/sql-client';
import {
  attemptSwap,
  type FollowCutOff,
  prepareStaging,
  SwapCutOffEndedError,
} from '../lambdas/core/swap/engine';
import { buildSwapPlan, type SwapPlan } from '../lambdas/core/swap/plan';
import {
  applyIncrementMismatch,
  IncrementMismatchError,
} from '../lambdas/pipeline/increment-mismatch';
import { CutOffSqlClient } from './support/data-api-cutoff';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner');
let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;
let pool: pg.Pool;
let cutOff: CutOffSqlClient;
let count = 0;
const warnings: string[] = [];
const log = { info: () => {}, warn: (message: string) => warnings.push(message) };

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
  cutOff = new CutOffSqlClient(pool, 200);
});

afterAll(async () => {
  await cutOff?.settle();
  await pool?.end();
  await pipeline?.end();
  await admin?.end();
});

/**
 * A live table of 3 rows with a watermark, a delta of 1 new row, and a plan whose proof claims
 * the source has 10 rows: the increment applies, and the proof then fails.
 */
async function mismatchingIncrement(triggerSql: string): Promise<SwapPlan> {
  count += 1;
  const live: QualifiedName = { schema: 'public', name: `inc_${count}` };
  await admin.query(`
    SET ROLE ${roles.owner};
    CREATE TABLE public.${live.name} (id int PRIMARY KEY, v text);
    INSERT INTO public.${live.name} SELECT g, 'old' FROM generate_series(1, 3) g;
    CREATE FUNCTION public.${live.name}_slow() RETURNS trigger LANGUAGE plpgsql
      AS $$ BEGIN ${triggerSql}; RETURN NULL; END $$;
    CREATE TRIGGER slow AFTER INSERT ON public.${live.name}
      FOR EACH STATEMENT EXECUTE FUNCTION public.${live.name}_slow();
    RESET ROLE;
  `);
  await pipeline.query(
    `INSERT INTO redshift_sync.watermarks (target_schema, target_table, cursor_column, cursor_type, watermark, run_id)
     VALUES ('public', $1, 'id', 'integer', '3', 'earlier')`,
    [live.name],
  );
  const staging = await createStaging(pipeline, live, `inc_${count}_delta`, `SELECT 4, 'new'`);
  await prepareStaging(sql, { live, staging, strategy: 'merge' });
  return buildSwapPlan(
    [
      {
        live,
        staging,
        strategy: 'rename',
        primaryKey: ['id'],
        increment: {
          mode: 'merge',
          proof: {
            cursor: 'id',
            columns: [{ name: 'id', figures: 'integer' }],
            figures: { row_count: '10', c0_nulls: '0', c0_min: '1', c0_max: '4' },
          },
        },
        watermark: {
          source: { schema: 'sales', name: 'cut' },
          cursor: 'id',
          cursorKind: 'integer',
          value: '4',
          fullRefreshReason: null,
        },
      },
    ],
    { runId: `inc-${count}` },
  );
}

function following(): FollowCutOff {
  return {
    deadline: Date.now() + 60_000,
    pollIntervalMs: 100,
    now: Date.now,
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
  };
}

async function state(
  plan: SwapPlan,
): Promise<{ rows: number; watermark: string; reason: string | null }> {
  const name = plan.tables[0]!.live.name;
  const { rows } = await admin.query(
    `SELECT (SELECT count(*)::int FROM public.${name}) AS rows, watermark, full_refresh_reason AS reason
       FROM redshift_sync.watermarks WHERE target_table = $1`,
    [name],
  );
  return rows[0];
}

async function swapAndHandle(
  client: SqlClient,
  plan: SwapPlan,
  follow?: FollowCutOff,
): Promise<unknown> {
  return attemptSwap(client, plan, follow)
    .catch((error: unknown) => applyIncrementMismatch(sql, log, plan, error))
    .catch((error: unknown) => error);
}

describe('an increment that fails its whole-table proof', () => {
  it('rolls back, and marks the table it names for a full refresh', async () => {
    const plan = await mismatchingIncrement('NULL');
    const error = await swapAndHandle(sql, plan);
    expect(error).toBeInstanceOf(IncrementMismatchError);
    expect((error as Error).message).toContain('rows: 10 in Redshift, 4 in live');
    const after = await state(plan);
    expect(after).toMatchObject({ rows: 3, watermark: '3' });
    expect(after.reason).toMatch(
      /^the last increment failed the whole-table check: the increment of "public"."inc_1"/,
    );
  });

  it('cut off by the Data API and then rolled back, still marks it, since its error cannot be read', async () => {
    const plan = await mismatchingIncrement('PERFORM pg_sleep(1)');
    const error = await swapAndHandle(cutOff, plan, following());
    expect(error).toBeInstanceOf(SwapCutOffEndedError);
    const after = await state(plan);
    expect(after).toMatchObject({ rows: 3, watermark: '3' });
    expect(after.reason).toMatch(
      /^the last incremental swap was cut off by the Data API and then rolled back/,
    );
    expect(warnings).toHaveLength(2);
  });
});
