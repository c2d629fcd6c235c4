import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import type { StatementState } from '../lambdas/core/transfer/ports';
import { installAwsS3Shim } from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { LocalWarehouse, LocalWarehouseError } from '../local/emulators/local-warehouse';
import { freshDatabase, type TestDatabase } from './support/db';

const BUCKET = 'warehouse-bucket';
const APPLICATION = 'local-warehouse-test';
/** The contract's text format (lambdas/core/unload/statement.ts) and its COPY options. */
const FORMAT = "DELIMITER AS '|' NULL AS '\\\\N' ESCAPE MANIFEST VERBOSE";
const COPY_OPTIONS = "(FORMAT text, DELIMITER '|', NULL '\\N', ENCODING 'UTF8')";

let s3Dir: string;
let db: TestDatabase;
let admin: pg.Client;
let warehouse: LocalWarehouse;

function unloadTo(prefix: string, query: string): string {
  const literal = `'${query.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
  return `UNLOAD (${literal}) TO 's3://${BUCKET}/${prefix}' IAM_ROLE 'arn:aws:iam::123456789012:role/unload' ${FORMAT}`;
}

async function settle(id: string): Promise<StatementState> {
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const state = await warehouse.describe(id);
    if (state.state !== 'running') return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`statement ${id} did not finish`);
}

/** Waits until a warehouse session waits for a lock (the batch is parked mid-way). */
async function waitUntilBlocked(): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt += 1) {
    const { rows } = await admin.query(
      `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
      [APPLICATION],
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error('the batch never waited for the lock');
}

async function rowsIn(key: string): Promise<string[]> {
  const text = await readFile(join(s3Dir, BUCKET, key), 'utf8');
  return text.split('\n').filter((line) => line !== '');
}

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'emulator-warehouse-'));
  await chmod(s3Dir, 0o755);
  db = await freshDatabase();
  admin = await db.connect('warehouse-admin');
  await admin.query(`CREATE TABLE public.events (id int PRIMARY KEY, what text)`);
  await admin.query(`INSERT INTO public.events VALUES (1, 'one'), (2, 'two')`);
  warehouse = new LocalWarehouse({ sourceUrl: db.url, s3Dir, applicationName: APPLICATION });
});

afterAll(async () => {
  await warehouse.close();
  await rm(s3Dir, { recursive: true, force: true });
});

describe('LocalWarehouse', () => {
  it('runs a batch in one snapshot: a row committed between two UNLOADs is not in the second', async () => {
    await admin.query('SELECT pg_advisory_lock(4242)');
    const id = await warehouse.submitBatch(
      [
        unloadTo('runs/snap/first_', 'SELECT id FROM public.events ORDER BY id'),
        'SELECT pg_advisory_xact_lock(4242)',
        unloadTo('runs/snap/second_', 'SELECT id FROM public.events ORDER BY id'),
        'SELECT CAST(COUNT(*) AS VARCHAR(100)) AS row_count FROM public.events',
      ],
      'snapshot',
    );
    await waitUntilBlocked();
    expect(await warehouse.describe(id)).toEqual({ state: 'running', status: 'STARTED' });
    await admin.query(`INSERT INTO public.events VALUES (3, 'three')`);
    await admin.query('SELECT pg_advisory_unlock(4242)');
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });
    expect(await rowsIn('runs/snap/first_0000_part_00')).toEqual(['1']);
    expect(await rowsIn('runs/snap/second_0000_part_00')).toEqual(['1']);
    expect(await rowsIn('runs/snap/second_0001_part_00')).toEqual(['2']);
    expect(await warehouse.fetchRows(id, 3)).toEqual([{ row_count: '2' }]);
    await admin.query('DELETE FROM public.events WHERE id = 3');
  });

  it('moves from SUBMITTED through STARTED to FINISHED', async () => {
    await admin.query('SELECT pg_advisory_lock(4343)');
    const id = await warehouse.submitStatement('SELECT pg_advisory_xact_lock(4343)', {}, 'park');
    expect(await warehouse.describe(id)).toEqual({ state: 'running', status: 'SUBMITTED' });
    await waitUntilBlocked();
    expect(await warehouse.describe(id)).toEqual({ state: 'running', status: 'STARTED' });
    await expect(warehouse.fetchRows(id)).rejects.toThrow(
      /is STARTED; its rows can be fetched once/,
    );
    await admin.query('SELECT pg_advisory_unlock(4343)');
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });
  });

  it('fails a batch with the error and which statement, rolls it all back, and keeps written files', async () => {
    const id = await warehouse.submitBatch(
      [
        "INSERT INTO public.events VALUES (10, 'ten')",
        unloadTo('runs/failed/t_', 'SELECT id FROM public.events ORDER BY id'),
        'SELECT * FROM public.no_such_table',
        'SELECT 1',
      ],
      'failing',
    );
    const state = await settle(id);
    expect(state).toEqual({
      state: 'failed',
      status: 'FAILED',
      error:
        'statement 3 of 4 (SELECT * FROM public.no_such_table) failed: ERROR: relation "public.no_such_table" does not exist',
    });
    const { rows } = await admin.query('SELECT id FROM public.events ORDER BY id');
    expect(rows).toEqual([{ id: 1 }, { id: 2 }]);
    // Written before the failure; the rollback does not take files back, as in Redshift.
    expect(await rowsIn('runs/failed/t_0000_part_00')).toEqual(['1', '10']);
  });

  it('reports an UNLOAD the emulator refuses like any failed statement', async () => {
    const id = await warehouse.submitBatch(
      ["SET timezone TO 'UTC'", `${unloadTo('runs/csv/t_', 'SELECT 1')} CSV`],
      'csv',
    );
    const state = await settle(id);
    expect(state.state).toBe('failed');
    expect(state.state === 'failed' && state.error).toMatch(
      /^statement 2 of 2 \(UNLOAD .*\) failed: ERROR: UNLOAD option CSV is not supported by the local UNLOAD emulator/,
    );
  });

  it('returns rows typed as the Data API types them, and binds :name parameters as text', async () => {
    const id = await warehouse.submitStatement(
      `SELECT table_name AS name, CAST(:n AS int) + 1 AS next, 2.5::float8 AS ratio, 12345678901::bigint AS big,
              1.10::numeric(5,2) AS amount, true AS yes, NULL::text AS nothing, DATE '2024-01-02' AS day
         FROM information_schema.tables WHERE table_schema = :schema AND table_name = :table`,
      { schema: 'public', table: 'events', n: '41' },
      'typed',
    );
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });
    expect(await warehouse.fetchRows(id)).toEqual([
      {
        name: 'events',
        next: 42,
        ratio: 2.5,
        big: 12345678901,
        amount: '1.10',
        yes: true,
        nothing: null,
        day: '2024-01-02',
      },
    ]);
  });

  it("reads string literals with Redshift's backslash escapes", async () => {
    const id = await warehouse.submitStatement(
      String.raw`SELECT 'a\\b' AS backslash, 'it\'s' AS quote, 'tab\there' AS tab`,
      {},
      'literals',
    );
    await settle(id);
    expect(await warehouse.fetchRows(id)).toEqual([
      { backslash: 'a\\b', quote: "it's", tab: 'tab\there' },
    ]);
  });

  it('offers FROM_VARBYTE and a JSON_SERIALIZE that prints jsonb as Redshift prints SUPER', async () => {
    const id = await warehouse.submitStatement(
      `SELECT FROM_VARBYTE('\\\\x00ff41'::bytea, 'hex') AS hex, FROM_VARBYTE('\\\\x4d'::bytea, 'binary') AS bits,
              from_varbyte(convert_to('Grüße', 'UTF8'), 'UTF-8') AS utf8, FROM_VARBYTE(decode(repeat('ab', 60), 'hex'), 'base64') AS b64,
              JSON_SERIALIZE('{"b": [1, 2.50, null, true], "a": "x\\\\ny"}'::jsonb) AS doc,
              JSON_SERIALIZE(NULL::jsonb) AS missing`,
      {},
      'shims',
    );
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });
    const [row] = await warehouse.fetchRows(id);
    expect(row).toEqual({
      hex: '00ff41',
      bits: '01001101',
      utf8: 'Grüße',
      b64: Buffer.from('ab'.repeat(60), 'hex').toString('base64'),
      doc: '{"a":"x\\ny","b":[1,2.50,null,true]}',
      missing: 'null',
    });
  });

  it('cancels a call on a session: it ends ABORTED, and its transaction stays open, aborted, until a ROLLBACK', async () => {
    await admin.query('SELECT pg_advisory_lock(4545)');
    const { statementId, sessionId } = await warehouse.submitInSession(
      ['BEGIN', 'SELECT pg_advisory_xact_lock(4545)'],
      'unload 1/2',
      { keepAliveSeconds: 60 },
    );
    await waitUntilBlocked();
    // Found by its name's prefix while it runs (as ListStatements), with its session.
    expect(await warehouse.listStatements('unload ')).toEqual([
      { statementId, name: 'unload 1/2', state: 'running', status: 'STARTED', sessionId },
    ]);
    expect(await warehouse.listStatements('Unload ')).toEqual([]);
    expect(await warehouse.cancel(statementId)).toBe(true);
    expect(await settle(statementId)).toEqual({
      state: 'failed',
      status: 'ABORTED',
      error: expect.stringContaining('canceling statement due to user request'),
    });
    // Ended: nothing left to cancel, and listed as ended.
    expect(await warehouse.cancel(statementId)).toBe(false);
    expect(await warehouse.listStatements('unload ')).toEqual([
      { statementId, name: 'unload 1/2', state: 'failed', status: 'ABORTED', sessionId },
    ]);
    const next = await warehouse.submitInSession(['SELECT 1 AS one'], 'next', { sessionId });
    expect(await settle(next.statementId)).toMatchObject({
      state: 'failed',
      error: expect.stringContaining('current transaction is aborted'),
    });
    const rollback = await warehouse.submitInSession(['ROLLBACK'], 'rollback', { sessionId });
    expect(await settle(rollback.statementId)).toEqual({ state: 'done', status: 'FINISHED' });
    const { rows } = await admin.query(
      `SELECT state FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'`,
      [APPLICATION],
    );
    expect(rows).toEqual([]);
    await admin.query('SELECT pg_advisory_unlock(4545)');
  });

  it('refuses what the Data API refuses: unknown ids, batch rows without an index, two statements in one', async () => {
    await expect(warehouse.describe('nope')).rejects.toThrow(LocalWarehouseError);
    const id = await warehouse.submitBatch(["SET timezone TO 'UTC'", 'SELECT 1 AS one'], 'pair');
    await settle(id);
    await expect(warehouse.fetchRows(id)).rejects.toThrow(/is a batch: give the index/);
    await expect(warehouse.fetchRows(id, 0)).rejects.toThrow(/returned no result set/);
    expect(await warehouse.fetchRows(id, 1)).toEqual([{ one: 1 }]);
    await expect(warehouse.submitStatement('SELECT 1; SELECT 2', {}, 'two')).rejects.toThrow(
      /more than one SQL statement/,
    );
    await expect(warehouse.submitBatch([], 'none')).rejects.toThrow(/1 to 40 statements/);
  });
});

describe('UNLOAD, then the aws_s3 shim: a round trip of awkward values', () => {
  const COLUMNS: readonly (readonly [name: string, type: string])[] = [
    ['id', 'integer'],
    ['note', 'text'],
    ['code', 'character(3)'],
    ['small', 'smallint'],
    ['whole', 'integer'],
    ['big', 'bigint'],
    ['exact', 'numeric(38,10)'],
    ['single', 'real'],
    ['double', 'double precision'],
    ['flag', 'boolean'],
    ['day', 'date'],
    ['clock', 'time'],
    ['moment', 'timestamp'],
    ['instant', 'timestamptz'],
    ['bytes', 'bytea'],
    ['doc', 'jsonb'],
  ];

  beforeAll(async () => {
    const columns = COLUMNS.map(([name, type]) => `"${name}" ${type}`).join(', ');
    await admin.query(`CREATE SCHEMA src`);
    await admin.query(`CREATE SCHEMA dst`);
    await admin.query(`CREATE TABLE src.awkward (${columns})`);
    await admin.query(`CREATE TABLE dst.awkward (${columns})`);
    await admin.query(
      `INSERT INTO src.awkward VALUES
        (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (2, '', 'a|b', -32768, -2147483648, -9223372036854775808, -9999999999999999999999999999.9999999999,
         '-3.4028235e38', '-1.7976931348623157e308', false, '0001-01-01', '00:00:00', '1970-01-01 00:00:00',
         '2024-06-30 23:59:59.999999+02', '\\x', '{}'),
        (3, '\\N', 'NUL', 32767, 2147483647, 9223372036854775807, 9999999999999999999999999999.9999999999,
         '1.4e-45', '5e-324', true, '9999-12-31', '23:59:59.999999', '2024-02-29 12:34:56.789012',
         '1999-12-31 23:00:00-01', '\\x00ff5c7c0a', '{"a": "x\\ny\\\\z|", "b": [1, 2.5e3, null, true], "c": "😀"}'),
        (4, 'NULL', '\\\\', 0, 0, 0, 0.0000000001, '1.1754944e-38', '2.2250738585072014e-308', NULL,
         '2000-02-29', '12:00:00.5', '2000-01-01 00:00:00.000001', 'infinity', '\\x5c4e', 'null'),
        (5, E'pipe | tab \\t cr \\r lf \\n crlf \\r\\n back \\\\ quote '' " end \\\\', E'\\t\\n ', 1, 1, 1, -0.0000000001,
         '-0', 'NaN', false, '1999-01-08', '01:02:03', '1999-01-08 04:05:06', '-infinity', '\\xdeadbeef', '[]'),
        (6, 'Grüße, 東京, 😀, \\N, NULL', 'é😀', -1, -1, -1, 12345678901234567890.0123456789,
         'Infinity', '-Infinity', true, '1582-10-15', '10:00', '2262-04-11 23:47:16.854775',
         '2038-01-19 03:14:08+00', '\\x0d0a', '"just a string"')`,
    );
    await admin.query(
      `INSERT INTO src.awkward (id, note) SELECT 100 + g, repeat('long\\', 13108) || g FROM generate_series(1, 3) AS g`,
    );
    await installAwsS3Shim(admin, { s3Dir });
  });

  it('imports every file the UNLOAD wrote and gets back every value, field by field', async () => {
    // As lambdas/core/unload/select-list.ts writes them for VARBYTE and SUPER.
    const selectList = COLUMNS.map(([name, type]) => {
      if (type === 'bytea') return `CHR(92) || 'x' || FROM_VARBYTE("${name}", 'hex') AS "${name}"`;
      if (type === 'jsonb') {
        return `CASE WHEN "${name}" IS NULL THEN NULL ELSE JSON_SERIALIZE("${name}") END AS "${name}"`;
      }
      return `"${name}" AS "${name}"`;
    }).join(', ');
    const id = await warehouse.submitBatch(
      [
        "SET timezone TO 'UTC'",
        'SET extra_float_digits TO 2',
        "SET datestyle TO 'ISO, MDY'",
        unloadTo('runs/round-trip/awkward/', `SELECT ${selectList} FROM "src"."awkward"`),
      ],
      'round trip',
    );
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });

    const manifest = JSON.parse(
      await new LocalObjectStore(s3Dir).getText(BUCKET, 'runs/round-trip/awkward/manifest'),
    );
    const sql = new PgSqlClient(admin);
    let imported = 0;
    for (const entry of manifest.entries as {
      url: string;
      meta: { content_length: number; record_count: number };
    }[]) {
      if (entry.meta.content_length === 0) continue;
      const key = entry.url.slice(`s3://${BUCKET}/`.length);
      const [row] = await sql.query<{ result: string }>(
        'SELECT aws_s3.table_import_from_s3(:table, :columns, :options, aws_commons.create_s3_uri(:bucket, :key, :region)) AS result',
        {
          table: '"dst"."awkward"',
          columns: COLUMNS.map(([name]) => `"${name}"`).join(', '),
          options: COPY_OPTIONS,
          bucket: BUCKET,
          key,
          region: 'eu-west-1',
        },
      );
      expect(row!.result).toBe(
        `${entry.meta.record_count} rows imported into relation ""dst"."awkward"" from file ${key} of ${entry.meta.content_length} bytes`,
      );
      imported += entry.meta.record_count;
    }
    expect(imported).toBe(9);
    expect(manifest.meta.record_count).toBe(9);

    const mismatches = COLUMNS.map(
      ([name]) =>
        `count(*) FILTER (WHERE s."${name}" IS DISTINCT FROM d."${name}")::int AS "${name}"`,
    ).join(', ');
    const { rows } = await admin.query(
      `SELECT count(*)::int AS matched, ${mismatches}
         FROM src.awkward AS s JOIN dst.awkward AS d USING (id)`,
    );
    expect(rows).toEqual([
      { matched: 9, ...Object.fromEntries(COLUMNS.map(([name]) => [name, 0])) },
    ]);
  });
});
