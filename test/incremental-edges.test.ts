/**
 * Incremental sync at its edges, through the whole local pipeline as the pipeline's
 * non-superuser role: a cursor that is NULL in the source, a live table whose watermark went
 * stale (synced without `incremental`, or rolled back), a date cursor in mode append, and two
 * increments failing their proof in one run.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { rollbackTable } from '../ops/rollback';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import type { TestDatabase } from './support/db';
import { rowsOf, runLocally, tableOf } from './support/local-pipeline';
import { uniqueRoles } from './support/swap-fixtures';

let targetDb: TestDatabase;
let source: pg.Client;
let target: pg.Client;
let ground: DatabasesAndBucket;
const roles = uniqueRoles('readings');

const LOCKS = { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' };

beforeAll(async () => {
  ground = await databasesAndBucket('incremental-edges-bucket');
  ({ targetDb, source, target } = ground);
  // The pipeline creates each live table on its first run (it may create in public), and so owns it.
  await source.query('CREATE SCHEMA sales');
});

function run(config: unknown, request: Record<string, unknown> = {}): Promise<RunSummary> {
  return runLocally({ ...ground.runOn, config, request });
}

async function expectInSync(sourceTable: string, liveTable: string, order: string) {
  expect(await rowsOf(target, liveTable, order)).toEqual(await rowsOf(source, sourceTable, order));
}

async function watermarkOf(name: string): Promise<{ watermark: string; reason: string | null }> {
  const { rows } = await target.query(
    `SELECT watermark, full_refresh_reason AS reason FROM redshift_sync.watermarks
      WHERE target_schema = 'public' AND target_table = $1`,
    [name],
  );
  return rows[0];
}

describe('a cursor that is NULL in the source', () => {
  const TABLE = {
    source: 'sales.tickets',
    target: 'public.tickets',
    primaryKey: ['id'],
    incremental: { cursor: 'updated_at', mode: 'merge' },
  };
  const CONFIG = { tables: [TABLE], locks: LOCKS };
  const NULL_REASON =
    /^the cursor updated_at was NULL in (\d+) rows? of the source table sales\.tickets at the last run: an increment cannot see a row whose cursor is NULL \(inserted with NULL, or updated to NULL\), so every run of this table is full until none is; make updated_at NOT NULL in the source \(fill its NULLs, e\.g\. with the row's creation time, and set it on every insert and update\), or name a cursor that is never NULL\.$/;

  it('fails the increment that meets a new NULL, naming the column and what to do', async () => {
    await source.query(`
      CREATE TABLE sales.tickets (id int PRIMARY KEY, title text, updated_at timestamptz);
      INSERT INTO sales.tickets
        SELECT g, 'ticket ' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
        FROM generate_series(1, 5) g;
    `);
    expect((await run(CONFIG)).error).toBeNull();
    await source.query(`INSERT INTO sales.tickets VALUES (6, 'no cursor yet', NULL)`);
    const failed = await run(CONFIG);
    expect(failed.status).toBe('FAILED');
    expect(failed.error!.message).toContain(
      'the increment of "public"."tickets" was not applied: its cursor updated_at is NULL in 1 row of the source table (0 in live), and an increment never sends a row whose cursor is NULL (inserted with NULL, or updated to NULL). Make updated_at NOT NULL in the source (fill its NULLs, e.g. with the row\'s creation time, and set it on every insert and update), or name a cursor that is never NULL; until then every run of this table is full.',
    );
    expect((await watermarkOf('tickets')).reason).toMatch(/^the last increment failed/);
  });

  it('then takes the table whole every run while the cursor has NULLs, saying why', async () => {
    const first = await run(CONFIG);
    expect(first.error).toBeNull();
    expect(tableOf(first, 'public.tickets')).toMatchObject({ mode: 'full' });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
    expect((await watermarkOf('tickets')).reason).toMatch(NULL_REASON);
    // A row updated to NULL is a change an increment could not see: a full run sees it.
    await source.query(
      `UPDATE sales.tickets SET title = 'reopened', updated_at = NULL WHERE id = 2`,
    );
    const second = await run(CONFIG);
    expect(second.error).toBeNull();
    expect(tableOf(second, 'public.tickets')).toMatchObject({
      mode: 'full',
      fullRefreshReason: expect.stringMatching(NULL_REASON),
    });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
    expect((await watermarkOf('tickets')).reason).toMatch(NULL_REASON);
    expect(NULL_REASON.exec((await watermarkOf('tickets')).reason!)![1]).toBe('2');
  });

  it('goes back to increments once the source has no NULL cursor', async () => {
    await source.query(
      `UPDATE sales.tickets SET updated_at = '2026-02-01 00:00:00+00' WHERE updated_at IS NULL`,
    );
    const full = await run(CONFIG);
    expect(tableOf(full, 'public.tickets')).toMatchObject({ mode: 'full' });
    expect((await watermarkOf('tickets')).reason).toBeNull();
    await source.query(
      `UPDATE sales.tickets SET title = 'edited', updated_at = '2026-02-02 00:00:00+00' WHERE id = 1`,
    );
    const increment = await run(CONFIG);
    expect(increment.error).toBeNull();
    expect(tableOf(increment, 'public.tickets')).toMatchObject({
      mode: 'incremental',
      updated: 1,
    });
    await expectInSync('sales.tickets', 'public.tickets', 'id');
  });
});

describe('a watermark that no longer describes live', () => {
  const EVENTS = { source: 'sales.events', target: 'public.events' };
  const APPEND = { ...EVENTS, incremental: { cursor: 'seq', mode: 'append' } };
  const STALE = (by: string) =>
    new RegExp(
      `^the live table was replaced by ${by}, which keeps no watermark \\(a run of the table without "incremental", or a rollback\\), so its watermark no longer says which rows live holds$`,
    );

  it('takes the table whole after a run that synced it without incremental', async () => {
    await source.query(`
      CREATE TABLE sales.events (seq bigint, msg text);
      INSERT INTO sales.events SELECT g, 'event ' || g FROM generate_series(1, 3) g;
    `);
    expect((await run({ tables: [APPEND], locks: LOCKS })).error).toBeNull();
    // Taken out of incremental for a while: live gets every row, the watermark stays at 3.
    await source.query(`INSERT INTO sales.events VALUES (4, 'event 4')`);
    expect((await run({ tables: [EVENTS], locks: LOCKS })).error).toBeNull();
    expect((await watermarkOf('events')).reason).toMatch(STALE('\\S+'));
    await source.query(`INSERT INTO sales.events VALUES (5, 'event 5')`);
    // Back to incremental: appending every row past 3 would insert row 4 a second time.
    const back = await run({ tables: [APPEND], locks: LOCKS });
    expect(back.error).toBeNull();
    expect(tableOf(back, 'public.events')).toMatchObject({
      mode: 'full',
      fullRefreshReason: expect.stringMatching(STALE('\\S+')),
    });
    await expectInSync('sales.events', 'public.events', 'seq');
    await source.query(`INSERT INTO sales.events VALUES (6, 'event 6')`);
    const next = await run({ tables: [APPEND], locks: LOCKS });
    expect(tableOf(next, 'public.events')).toMatchObject({ mode: 'incremental', inserted: 1 });
    await expectInSync('sales.events', 'public.events', 'seq');
  });

  it('takes the table whole after a rollback put an older version back', async () => {
    const ACCOUNTS = {
      source: 'sales.accounts',
      target: 'public.accounts',
      primaryKey: ['id'],
      incremental: { cursor: 'version', mode: 'merge' },
    };
    const config = { tables: [ACCOUNTS], locks: LOCKS };
    await source.query(`
      CREATE TABLE sales.accounts (id int PRIMARY KEY, owner text, version bigint);
      INSERT INTO sales.accounts SELECT g, 'owner ' || g, g FROM generate_series(1, 5) g;
    `);
    expect((await run(config)).error).toBeNull();
    // A change the figures cannot see (same length, not an extreme), then a full run that
    // retires the version without it, then an increment.
    await source.query(`UPDATE sales.accounts SET owner = 'renamed', version = 6 WHERE id = 3`);
    expect((await run(config, { fullRefresh: true })).error).toBeNull();
    await source.query(`UPDATE sales.accounts SET version = 7 WHERE id = 5`);
    expect(tableOf(await run(config), 'public.accounts')).toMatchObject({ mode: 'incremental' });
    const pool = new (await import('pg')).default.Pool({ connectionString: targetDb.pipelineUrl });
    try {
      await rollbackTable(
        new PgSqlClient(pool),
        { schema: 'public', name: 'accounts' },
        {
          lockTimeoutMs: 200,
          graceSeconds: 0,
          pollIntervalSeconds: 0.2,
          maxWaitSeconds: 10,
        },
      );
    } finally {
      await pool.end();
    }
    expect(await rowsOf(target, 'public.accounts', 'id')).toContain('(3,"owner 3",3)');
    expect((await watermarkOf('accounts')).reason).toMatch(STALE('rollback-\\d+'));
    const after = await run(config);
    expect(after.error).toBeNull();
    expect(tableOf(after, 'public.accounts')).toMatchObject({ mode: 'full' });
    await expectInSync('sales.accounts', 'public.accounts', 'id');
  });
});

describe('a partition rolled back under an incremental table', () => {
  it("marks the partitioned table's watermark, and its next run is full", async () => {
    await source.query(`
      CREATE TABLE sales.readings (day date, id int, value text, seq bigint);
      INSERT INTO sales.readings SELECT date '2024-01-01' + (g % 2), g, 'v' || g, g FROM generate_series(1, 6) g;
    `);
    await target.query(`
      CREATE ROLE ${roles.readings} NOLOGIN;
      GRANT ${roles.readings} TO ${targetDb.pipelineLogin.user};
      GRANT USAGE, CREATE ON SCHEMA public TO ${roles.readings};
      SET ROLE ${roles.readings};
      CREATE TABLE public.readings (day date NOT NULL, id int NOT NULL, value text, seq bigint,
                                    PRIMARY KEY (day, id)) PARTITION BY RANGE (day);
      CREATE TABLE public.readings_20240101 PARTITION OF public.readings FOR VALUES FROM ('2024-01-01') TO ('2024-01-02');
      CREATE TABLE public.readings_20240102 PARTITION OF public.readings FOR VALUES FROM ('2024-01-02') TO ('2024-01-03');
      RESET ROLE;
    `);
    const config = {
      tables: [
        {
          source: 'sales.readings',
          target: 'public.readings',
          incremental: { cursor: 'seq', mode: 'merge' },
        },
      ],
      locks: LOCKS,
    };
    expect((await run(config)).error).toBeNull();
    // A full run replaces the changed partition and keeps the old one for rollback.
    await source.query(`UPDATE sales.readings SET value = 'vX', seq = 7 WHERE id = 2`);
    const full = await run(config, { fullRefresh: true });
    expect(tableOf(full, 'public.readings').partitionsReplaced).toEqual([
      'public.readings_20240101',
    ]);
    await source.query(`UPDATE sales.readings SET seq = 8 WHERE id = 3`);
    expect(tableOf(await run(config), 'public.readings')).toMatchObject({ mode: 'incremental' });
    expect((await watermarkOf('readings')).reason).toBeNull();
    const pool = new (await import('pg')).default.Pool({ connectionString: targetDb.pipelineUrl });
    try {
      await rollbackTable(
        new PgSqlClient(pool),
        { schema: 'public', name: 'readings_20240101' },
        { lockTimeoutMs: 200, graceSeconds: 0, pollIntervalSeconds: 0.2, maxWaitSeconds: 10 },
      );
    } finally {
      await pool.end();
    }
    expect((await watermarkOf('readings')).reason).toMatch(
      /^the live table was replaced by rollback-\d+, which keeps no watermark/,
    );
    const after = await run(config);
    expect(after.error).toBeNull();
    expect(tableOf(after, 'public.readings')).toMatchObject({ mode: 'full' });
    await expectInSync('sales.readings', 'public.readings', 'id');
  });
});

describe('a date cursor', () => {
  it('is refused in mode append by name before anything is unloaded, and works in merge', async () => {
    await source.query(`
      CREATE TABLE sales.visits (id int PRIMARY KEY, page text, day date);
      INSERT INTO sales.visits VALUES (1, '/a', '2026-03-28'), (2, '/b', '2026-03-29');
    `);
    const table = { source: 'sales.visits', target: 'public.visits' };
    const append = await run({
      tables: [{ ...table, incremental: { cursor: 'day', mode: 'append' } }],
      locks: LOCKS,
    });
    expect(append.status).toBe('FAILED');
    expect(append.error!.message).toContain(
      'public.visits: incremental.cursor day is a date, which mode "append" cannot use: it sends only the rows past the watermark\'s day, so rows of that day added after a run would never come. Use mode "merge" with a key (it reads from the watermark\'s day on), or a timestamp cursor.',
    );
    expect(tableOf(append, 'public.visits').status).not.toBe('swapped');
    const merge = {
      tables: [{ ...table, primaryKey: ['id'], incremental: { cursor: 'day', mode: 'merge' } }],
      locks: LOCKS,
    };
    expect((await run(merge)).error).toBeNull();
    // A row of the watermark's day added after the run: merge reads that day again.
    await source.query(`INSERT INTO sales.visits VALUES (3, '/c', '2026-03-29')`);
    const next = await run(merge);
    expect(next.error).toBeNull();
    expect(tableOf(next, 'public.visits')).toMatchObject({ mode: 'incremental', inserted: 1 });
    await expectInSync('sales.visits', 'public.visits', 'id');
  });
});

describe('increments failing their proof together', () => {
  const TABLES = ['alpha', 'beta'].map((name) => ({
    source: `sales.${name}`,
    target: `public.${name}`,
    primaryKey: ['id'],
    incremental: { cursor: 'seq', mode: 'merge' },
  }));
  const WITH_PLAIN = { source: 'sales.plain', target: 'public.plain' };
  const CONFIG = { tables: [...TABLES, WITH_PLAIN], locks: LOCKS };

  it('publishes no table of the run, names every table that failed, and marks each', async () => {
    for (const name of ['alpha', 'beta']) {
      await source.query(`
        CREATE TABLE sales.${name} (id int PRIMARY KEY, seq bigint);
        INSERT INTO sales.${name} SELECT g, g FROM generate_series(1, 4) g;
      `);
    }
    await source.query(`CREATE TABLE sales.plain (id int); INSERT INTO sales.plain VALUES (1)`);
    expect((await run(CONFIG)).error).toBeNull();
    // Both lose a row (deletes "ignore"), and the plain table changes.
    await source.query(`
      DELETE FROM sales.alpha WHERE id = 2;
      DELETE FROM sales.beta WHERE id = 3;
      INSERT INTO sales.plain VALUES (2);
    `);
    const failed = await run(CONFIG);
    expect(failed.status).toBe('FAILED');
    expect(failed.error!.message).toContain('the increment of "public"."alpha" was not applied');
    expect(failed.error!.message).toContain('the increment of "public"."beta" was not applied');
    // One transaction: the plain table waits for the next run too.
    expect(await rowsOf(target, 'public.plain', 'id')).toEqual(['(1)']);
    expect((await watermarkOf('alpha')).reason).toMatch(/^the last increment failed/);
    expect((await watermarkOf('beta')).reason).toMatch(/^the last increment failed/);

    const next = await run(CONFIG);
    expect(next.error).toBeNull();
    for (const name of ['alpha', 'beta']) {
      expect(tableOf(next, `public.${name}`)).toMatchObject({ mode: 'full' });
      await expectInSync(`sales.${name}`, `public.${name}`, 'id');
    }
    await expectInSync('sales.plain', 'public.plain', 'id');
  });
});

describe('cursors of every kind, with Aurora sessions not in UTC', () => {
  it('moves exactly the rows past each watermark, and fullRefresh leaves a plain table as it is', async () => {
    // Aurora's sessions in a zone of their own (Redshift's stay in UTC): the watermark of a
    // timestamptz is read and compared as UTC on both sides.
    await target.query(`ALTER DATABASE ${targetDb.name} SET timezone = 'Asia/Kolkata'`);
    await source.query(`
      CREATE TABLE sales.k_tz (id int PRIMARY KEY, c timestamptz);
      INSERT INTO sales.k_tz VALUES (1, '2026-03-29 00:30:00.123456+00'), (2, '2026-03-29 01:30:00.654321+00');
      CREATE TABLE sales.k_ts (id int PRIMARY KEY, c timestamp);
      INSERT INTO sales.k_ts VALUES (1, '2026-03-29 00:30:00.123456'), (2, '2026-03-29 01:30:00.999999');
      CREATE TABLE sales.k_num (id int PRIMARY KEY, c numeric(12,3));
      INSERT INTO sales.k_num VALUES (1, 1.125), (2, 2.250);
      CREATE TABLE sales.k_big (id int PRIMARY KEY, c bigint);
      INSERT INTO sales.k_big VALUES (1, 9007199254740993), (2, 9007199254740995);
      CREATE TABLE sales.k_plain (id int);
      INSERT INTO sales.k_plain VALUES (1);
    `);
    const names = ['k_tz', 'k_ts', 'k_num', 'k_big'];
    const config = {
      tables: [
        ...names.map((name) => ({
          source: `sales.${name}`,
          target: `public.${name}`,
          primaryKey: ['id'],
          incremental: { cursor: 'c', mode: 'merge' },
        })),
        { source: 'sales.k_plain', target: 'public.k_plain' },
      ],
      locks: LOCKS,
    };
    expect((await run(config)).error).toBeNull();
    // Each: a row at the watermark (sent again, unchanged), one just past it, one just below.
    await source.query(`
      INSERT INTO sales.k_tz VALUES (3, '2026-03-29 01:30:00.654322+00'), (4, '2026-03-29 01:30:00.65432+00');
      INSERT INTO sales.k_ts VALUES (3, '2026-03-29 01:30:01'), (4, '2026-03-29 01:30:00.999998');
      INSERT INTO sales.k_num VALUES (3, 2.251), (4, 2.249);
      INSERT INTO sales.k_big VALUES (3, 9007199254740996), (4, 9007199254740994);
    `);
    // Rows just below a watermark came after it: the proof fails on each (row counts), so
    // each next run is full. Rows just past it come as an increment.
    const failed = await run(config);
    expect(failed.status).toBe('FAILED');
    for (const name of names) {
      expect(failed.error!.message).toContain(
        `the increment of "public"."${name}" was not applied`,
      );
    }
    await source.query(
      `DELETE FROM ${names.map((name) => `sales.${name}`).join(' WHERE id = 4; DELETE FROM ')} WHERE id = 4`,
    );
    expect((await run(config)).error).toBeNull();
    await source.query(`
      INSERT INTO sales.k_tz VALUES (5, '2026-03-29 01:30:00.654323+00');
      INSERT INTO sales.k_ts VALUES (5, '2026-03-29 01:30:01.000001');
      INSERT INTO sales.k_num VALUES (5, 2.252);
      INSERT INTO sales.k_big VALUES (5, 9007199254740997);
      INSERT INTO sales.k_plain VALUES (2);
    `);
    const increment = await run(config);
    expect(increment.error).toBeNull();
    const watermarks: Record<string, string> = {
      k_tz: '2026-03-29 01:30:00.654323',
      k_ts: '2026-03-29 01:30:01.000001',
      k_num: '2.252',
      k_big: '9007199254740997',
    };
    for (const name of names) {
      // The watermark's row again (unchanged, not written) and the new one.
      expect(tableOf(increment, `public.${name}`)).toMatchObject({
        mode: 'incremental',
        rows: 2,
        inserted: 1,
        updated: 0,
        watermarkAfter: watermarks[name],
      });
      await expectInSync(`sales.${name}`, `public.${name}`, 'id');
    }
    // fullRefresh asks nothing of a table that is not incremental: it is taken whole anyway.
    await source.query(`INSERT INTO sales.k_plain VALUES (3)`);
    const full = await run(config, { fullRefresh: true });
    expect(full.error).toBeNull();
    expect(tableOf(full, 'public.k_plain')).toMatchObject({ mode: null, rows: 3 });
    expect(tableOf(full, 'public.k_big')).toMatchObject({ mode: 'full' });
    await expectInSync('sales.k_plain', 'public.k_plain', 'id');
    await target.query(`ALTER DATABASE ${targetDb.name} RESET timezone`);
  });
});

describe('a live table emptied by hand', () => {
  const TABLE = {
    source: 'sales.orders',
    target: 'public.orders',
    primaryKey: ['id'],
    incremental: { cursor: 'seq', mode: 'merge' },
  };
  const CONFIG = { tables: [TABLE], locks: LOCKS };

  it('is not published with rows missing, truncated or dropped and created again: the next run is full', async () => {
    await source.query(`
      CREATE TABLE sales.orders (id int PRIMARY KEY, seq bigint);
      INSERT INTO sales.orders SELECT g, g FROM generate_series(1, 5) g;
    `);
    expect((await run(CONFIG)).error).toBeNull();
    const pipeline = await targetDb.connect('by hand', targetDb.pipelineLogin);
    for (const emptying of [
      'TRUNCATE public.orders',
      'DROP TABLE public.orders; CREATE TABLE public.orders (id int PRIMARY KEY, seq bigint)',
    ]) {
      await pipeline.query(emptying);
      await source.query(
        `INSERT INTO sales.orders SELECT max(id) + 1, max(seq) + 1 FROM sales.orders`,
      );
      const failed = await run(CONFIG);
      expect(failed.status).toBe('FAILED');
      expect(failed.error!.message).toMatch(
        /^the increment of "public"\."orders" was not applied: with it, the live table would not match the whole source table in the same snapshot \(.*rows: \d+ in Redshift, 2 in live\)/,
      );
      expect(await rowsOf(target, 'public.orders', 'id')).toEqual([]);
      const next = await run(CONFIG);
      expect(next.error).toBeNull();
      expect(tableOf(next, 'public.orders')).toMatchObject({ mode: 'full' });
      await expectInSync('sales.orders', 'public.orders', 'id');
    }
  });
});

describe('a cursor whose live column has another type', () => {
  it('is refused naming both types and the one to use, not as a type that cannot be a cursor', async () => {
    await source.query(`
      CREATE TABLE sales.shipments (id int PRIMARY KEY, shipped_at timestamptz);
      INSERT INTO sales.shipments VALUES (1, '2026-03-29 00:30:00+00');
    `);
    await target.query(`
      CREATE TABLE public.shipments (id int PRIMARY KEY, shipped_at timestamp);
      ALTER TABLE public.shipments OWNER TO ${targetDb.pipelineLogin.user};
    `);
    const summary = await run({
      tables: [
        {
          source: 'sales.shipments',
          target: 'public.shipments',
          incremental: { cursor: 'shipped_at', mode: 'merge' },
        },
      ],
      locks: LOCKS,
    });
    expect(summary.status).toBe('FAILED');
    expect(summary.error!.message).toContain(
      "public.shipments: incremental.cursor shipped_at has type timestamp with time zone in sales.shipments but timestamp without time zone in the live table: a cursor's values must print alike on both sides; give the live column type timestamp with time zone, or name another cursor.",
    );
  });
});

describe('a table whose source changes between runs', () => {
  it('is taken whole, since the watermark was taken over another table', async () => {
    // A rebuilt copy: row 2 changed below the watermark, with figures that stay the same.
    await source.query(`
      CREATE TABLE sales.stock (id int PRIMARY KEY, item text, seq bigint);
      INSERT INTO sales.stock SELECT g, 'item ' || g, g FROM generate_series(1, 4) g;
      CREATE TABLE sales.stock_v2 (LIKE sales.stock INCLUDING ALL);
      INSERT INTO sales.stock_v2 SELECT * FROM sales.stock;
      UPDATE sales.stock_v2 SET item = 'itemX2' WHERE id = 2;
    `);
    const table = {
      target: 'public.stock',
      primaryKey: ['id'],
      incremental: { cursor: 'seq', mode: 'merge' },
    };
    expect(
      (await run({ tables: [{ ...table, source: 'sales.stock' }], locks: LOCKS })).error,
    ).toBeNull();
    const moved = await run({ tables: [{ ...table, source: 'sales.stock_v2' }], locks: LOCKS });
    expect(moved.error).toBeNull();
    expect(tableOf(moved, 'public.stock')).toMatchObject({
      mode: 'full',
      fullRefreshReason: 'the source table changed from sales.stock to sales.stock_v2',
    });
    await expectInSync('sales.stock_v2', 'public.stock', 'id');
  });
});

describe('a first run that would leave an increment no key', () => {
  it('is refused by name before anything is created, and passes with primaryKey', async () => {
    await source.query(`
      CREATE TABLE sales.parcels (id int PRIMARY KEY, seq bigint);
      INSERT INTO sales.parcels SELECT g, g FROM generate_series(1, 3) g;
    `);
    const table = {
      source: 'sales.parcels',
      target: 'public.parcels',
      incremental: { cursor: 'seq', mode: 'merge' },
    };
    const refused = await run({ tables: [table], locks: LOCKS });
    expect(refused.status).toBe('FAILED');
    expect(refused.error!.message).toContain(
      'public.parcels: incremental mode "merge" needs a key, and the live table does not exist yet: this run would create it without a primary key, and every increment after it would be refused. Set "primaryKey" for this table in the config, or create the live table with a primary key before the first run.',
    );
    const { rows } = await target.query(`SELECT to_regclass('public.parcels') AS live`);
    expect(rows).toEqual([{ live: null }]);
    const keyed = { tables: [{ ...table, primaryKey: ['id'] }], locks: LOCKS };
    expect((await run(keyed)).error).toBeNull();
    await source.query(`UPDATE sales.parcels SET seq = 4 WHERE id = 1`);
    const next = await run(keyed);
    expect(tableOf(next, 'public.parcels')).toMatchObject({ mode: 'incremental', updated: 1 });
    await expectInSync('sales.parcels', 'public.parcels', 'id');
  });
});
