/**
 * A partitioned live table through the whole local pipeline (state machine, unload, load,
 * quality gate, lock gate, swap, finish) as the pipeline's non-superuser role: with the default
 * strategy only the partition whose rows changed in the source is replaced, a run where nothing
 * changed changes nothing, and replaced partitions are kept per partition for `keepVersions`.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { RETIRED_SCHEMA } from '../lambdas/core/schema/admin';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { runLocally } from './support/local-pipeline';

let ground: DatabasesAndBucket;

const CONFIG = {
  tables: [{ source: 'sales.events', target: 'public.events' }],
  locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  retention: { keepVersions: 1 },
};

const ROWS = `SELECT d::date, g, 'v1 ' || g
  FROM generate_series('2024-01-01'::date, '2024-01-03'::date, '1 day') d, generate_series(1, 50) g`;

async function filenodes(): Promise<Record<string, number>> {
  const { rows } = await ground.target.query<{ name: string; filenode: number }>(
    `SELECT c.relname AS name, c.relfilenode::int AS filenode
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'public.events'::regclass ORDER BY 1`,
  );
  return Object.fromEntries(rows.map((row) => [row.name, row.filenode]));
}

async function retired(): Promise<string[]> {
  const { rows } = await ground.target.query<{ live: string }>(
    `SELECT live_table AS live FROM redshift_sync.retired_versions ORDER BY retired_at`,
  );
  return rows.map((row) => row.live);
}

function run() {
  return runLocally({ ...ground.runOn, config: CONFIG });
}

beforeAll(async () => {
  ground = await databasesAndBucket('partitions-run-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.events (day date, id integer, payload text);
    INSERT INTO sales.events ${ROWS};
  `);
  await ground.target.query(`
    SET ROLE ${ground.owner};
    CREATE TABLE public.events (day date NOT NULL, id integer NOT NULL, payload text,
                                PRIMARY KEY (day, id)) PARTITION BY RANGE (day);
    CREATE TABLE public.events_20240101 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2024-01-02');
    CREATE TABLE public.events_20240102 PARTITION OF public.events FOR VALUES FROM ('2024-01-02') TO ('2024-01-03');
    CREATE TABLE public.events_20240103 PARTITION OF public.events FOR VALUES FROM ('2024-01-03') TO ('2024-01-04');
    INSERT INTO public.events ${ROWS};
    RESET ROLE;
  `);
});

describe('a partitioned live table in a local run', () => {
  it('replaces only the partition whose rows changed in the source', async () => {
    const before = await filenodes();
    await ground.source.query(
      `UPDATE sales.events SET payload = 'v2' WHERE day = '2024-01-02' AND id = 7`,
    );
    const summary = await run();
    expect(summary.error).toBeNull();
    expect(
      summary.tables.map((table) => [
        table.target,
        table.status,
        table.rows,
        table.partitionsReplaced,
      ]),
    ).toEqual([['public.events', 'swapped', 150, ['public.events_20240102']]]);
    const after = await filenodes();
    expect(after.events_20240101).toBe(before.events_20240101);
    expect(after.events_20240103).toBe(before.events_20240103);
    expect(after.events_20240102).not.toBe(before.events_20240102);
    const { rows } = await ground.target.query(
      `SELECT payload FROM public.events WHERE day = '2024-01-02' AND id = 7`,
    );
    expect(rows).toEqual([{ payload: 'v2' }]);
    expect(await retired()).toEqual(['events_20240102']);
  });

  it('changes nothing when nothing changed', async () => {
    const before = await filenodes();
    const summary = await run();
    expect(summary.error).toBeNull();
    expect(summary.tables[0]!.partitionsReplaced).toEqual([]);
    expect(await filenodes()).toEqual(before);
    expect(await retired()).toEqual(['events_20240102']);
  });

  it('keeps keepVersions replaced versions per partition', async () => {
    await ground.source.query(
      `UPDATE sales.events SET payload = 'v3' WHERE day = '2024-01-02' AND id = 7`,
    );
    expect((await run()).error).toBeNull();
    const { rows } = await ground.target.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = '${RETIRED_SCHEMA}'`,
    );
    expect(rows).toEqual([{ n: 1 }]);
    expect(await retired()).toEqual(['events_20240102']);
  });
});
