/**
 * A partitioned table prepared over a transport that cuts calls off (the RDS Data API's 45 s,
 * scaled down to 150 ms): the comparison of partitions with staging and the fill of a
 * replacement outlast their calls, go on in the database, are followed to their end, and the
 * swap then publishes as if nothing had been cut off.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { plannedPartitions } from '../lambdas/core/partitions/prepare';
import { attemptSwap, prepareStaging } from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { CutOffSqlClient } from './support/data-api-cutoff';
import { freshDatabase, type TestDatabase } from './support/db';
import { createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const events: QualifiedName = { schema: 'public', name: 'events' };
const roles = uniqueRoles('owner', 'pipeline');

let db: TestDatabase;
let sql: PgSqlClient;
let pipeline: pg.Client;
let pool: pg.Pool;

beforeAll(async () => {
  db = await freshDatabase();
  const admin = await db.connect('test-admin');
  await admin.query(`
    CREATE ROLE ${roles.owner};
    GRANT CREATE, USAGE ON SCHEMA public TO ${roles.owner};
    SET ROLE ${roles.owner};
    CREATE TABLE public.events (day date NOT NULL, id integer NOT NULL, payload text,
                                PRIMARY KEY (day, id)) PARTITION BY RANGE (day);
    CREATE TABLE public.events_1 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2024-01-02');
    CREATE TABLE public.events_2 PARTITION OF public.events FOR VALUES FROM ('2024-01-02') TO ('2024-01-03');
    INSERT INTO public.events SELECT d, g, md5(g::text)
      FROM generate_series(date '2024-01-01', date '2024-01-02', '1 day') d, generate_series(1, 300000) g;
    RESET ROLE;
  `);
  const session = await pipelineSession(db, roles.pipeline, [roles.owner]);
  sql = session.sql;
  pipeline = session.client;
  const url = new URL(db.url);
  url.username = session.login.user;
  url.password = session.login.password;
  pool = new pg.Pool({ connectionString: url.href, application_name: 'cut-off client', max: 10 });
});

afterAll(async () => {
  await pool?.end();
});

describe('preparing a partitioned table over a transport that cuts calls off', () => {
  it('follows the comparison and the fill past their cut-offs, then publishes', async () => {
    const staging = await createStaging(
      pipeline,
      events,
      'events_cut',
      `SELECT day, id, CASE WHEN day = '2024-01-02' AND id = 7 THEN 'changed' ELSE payload END FROM public.events`,
    );
    const table = { live: events, staging, strategy: 'rename' as const };
    const cutOff = new CutOffSqlClient(pool, 150);
    await prepareStaging(cutOff, table, { pollIntervalMs: 50 });
    await cutOff.settle();

    const cut = cutOff.cutOffs.map(({ sql: text, longRunning }) => [
      /redshift-aurora-sync (partitions|partition fill) /.exec(text)?.[1] ?? text,
      longRunning,
    ]);
    expect(cut).toEqual(
      expect.arrayContaining([
        ['partitions', true],
        ['partition fill', true],
      ]),
    );
    const partitions = await plannedPartitions(sql, table);
    expect(partitions?.map(({ partition }) => partition.name)).toEqual(['events_2']);
    const outcome = await attemptSwap(
      sql,
      buildSwapPlan([{ ...table, partitions: partitions! }], { runId: 'cut-1' }),
    );
    expect(outcome.status).toBe('swapped');
    const [row] = await sql.query<{ payload: string; n: number }>(
      `SELECT (SELECT payload FROM public.events WHERE day = '2024-01-02' AND id = 7) AS payload,
              (SELECT count(*)::int FROM public.events) AS n`,
    );
    expect(row).toEqual({ payload: 'changed', n: 600000 });
    const [left] = await sql.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM redshift_sync.staging_figures',
    );
    expect(left).toEqual({ n: 0 });
  }, 60_000);
});
