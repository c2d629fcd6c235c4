import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatementState } from '../lambdas/core/transfer/ports';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { LocalWarehouse } from '../local/emulators/local-warehouse';
import { type UnloadBucket, UnloadFileWriter } from '../local/emulators/unload-files';
import { formatUnloadLine, type UnloadColumn } from '../local/emulators/unload-format';
import { freshDatabase } from './support/db';

const MB = 1024 * 1024;
const BUCKET = 'unload-bucket';

let s3Dir: string;
let store: LocalObjectStore;
let source: pg.Client;
let sourceUrl: string;
let warehouse: LocalWarehouse;
let runs = 0;

async function settle(id: string, on: LocalWarehouse = warehouse): Promise<StatementState> {
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const state = await on.describe(id);
    if (state.state !== 'running') return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`statement ${id} did not finish`);
}

/** Runs one UNLOAD of `query` into a fresh prefix (or `prefix`) and returns the prefix. */
async function unload(
  query: string,
  options: string,
  prefix?: string,
  settings: readonly string[] = [],
): Promise<string> {
  runs += 1;
  const keyPrefix = prefix ?? `runs/r${runs}/t/`;
  const statement = `UNLOAD ('${query.replaceAll('\\', '\\\\').replaceAll("'", "''")}') TO 's3://${BUCKET}/${keyPrefix}' IAM_ROLE 'arn:aws:iam::123456789012:role/unload' ${options}`;
  const state = await settle(
    await warehouse.submitBatch(["SET timezone TO 'UTC'", ...settings, statement], 'unload'),
  );
  if (state.state === 'failed') throw new Error(state.error);
  return keyPrefix;
}

const CONTRACT = "DELIMITER AS '|' NULL AS '\\\\N' ESCAPE MANIFEST VERBOSE";

function file(key: string): Promise<string> {
  return readFile(join(s3Dir, BUCKET, key), 'utf8');
}

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'emulator-unload-'));
  await chmod(s3Dir, 0o755);
  store = new LocalObjectStore(s3Dir);
  const db = await freshDatabase();
  sourceUrl = db.url;
  source = await db.connect('unload-source');
  await source.query(`CREATE SCHEMA sales`);
  await source.query(`CREATE TABLE sales."Notes" (id int PRIMARY KEY, note varchar(70000))`);
  await source.query(
    `INSERT INTO sales."Notes" VALUES
       (1, NULL), (2, ''), (3, '\\N'), (4, 'NULL'), (5, 'a|b'), (6, E'tab\\there'),
       (7, E'cr\\rlf\\ncrlf\\r\\nend'), (8, E'back\\\\slash \\\\N trailing\\\\'),
       (9, 'quotes '' and "'), (10, 'Grüße, 東京, 😀'), (11, repeat('x', 65536))`,
  );
  await source.query(
    `CREATE TABLE sales.numbers (id int, s smallint, i integer, b bigint, n numeric(38,10),
       r real, d double precision, flag boolean, day date, t time, ts timestamp, tstz timestamptz)`,
  );
  await source.query(
    `INSERT INTO sales.numbers VALUES
       (1, -32768, -2147483648, -9223372036854775808, -9999999999999999999999999999.9999999999,
        '-3.4028235e38', '-1.7976931348623157e308', false, '0001-01-01', '00:00:00',
        '1970-01-01 00:00:00', '2024-06-30 23:59:59.5+02'),
       (2, 32767, 2147483647, 9223372036854775807, 9999999999999999999999999999.9999999999,
        '1.4e-45', '5e-324', true, '9999-12-31', '23:59:59.999999',
        '2024-02-29 12:34:56.789012', '1999-12-31 23:00:00-01'),
       (3, 0, 0, 0, 0.0000000001, '1.1754944e-38', '2.2250738585072014e-308', NULL, NULL, NULL,
        NULL, NULL),
       (4, NULL, NULL, NULL, NULL, '-0', 'NaN', NULL, NULL, NULL, NULL, 'infinity')`,
  );
  warehouse = new LocalWarehouse({ sourceUrl, s3Dir });
});

afterAll(async () => {
  await warehouse.close();
  await rm(s3Dir, { recursive: true, force: true });
});

describe('UNLOAD emulator: bytes', () => {
  it('writes text values with ESCAPE before LF, CR, | and \\, and NULL as \\N', async () => {
    const prefix = await unload(
      `SELECT id, note FROM sales."Notes" WHERE id <= 10 ORDER BY id`,
      CONTRACT,
    );
    // Two slices, rows dealt in turn: odd ids to slice 0, even ids to slice 1.
    expect(await file(`${prefix}0000_part_00`)).toBe(
      [
        '1|\\N\n',
        '3|\\\\N\n',
        '5|a\\|b\n',
        '7|cr\\\rlf\\\ncrlf\\\r\\\nend\n',
        '9|quotes \' and "\n',
      ].join(''),
    );
    expect(await file(`${prefix}0001_part_00`)).toBe(
      [
        '2|\n',
        '4|NULL\n',
        '6|tab\there\n',
        '8|back\\\\slash \\\\N trailing\\\\\n',
        '10|Grüße, 東京, 😀\n',
      ].join(''),
    );
  });

  it('writes numbers, booleans, dates and times as the server prints them (timestamptz in UTC), floats with 6 + 2 and 15 + 2 digits', async () => {
    const prefix = await unload(
      'SELECT id, s, i, b, n, r, d, flag, day, t, ts, tstz FROM sales.numbers ORDER BY id',
      `${CONTRACT} PARALLEL OFF`,
      undefined,
      ['SET extra_float_digits TO 2'],
    );
    expect(await store.listKeys(BUCKET, prefix)).toEqual([`${prefix}000`, `${prefix}manifest`]);
    expect((await file(`${prefix}000`)).split('\n')).toEqual([
      '1|-32768|-2147483648|-9223372036854775808|-9999999999999999999999999999.9999999999|-3.4028235e+38|-1.7976931348623157e+308|f|0001-01-01|00:00:00|1970-01-01 00:00:00|2024-06-30 21:59:59.5+00',
      '2|32767|2147483647|9223372036854775807|9999999999999999999999999999.9999999999|1.4012985e-45|4.9406564584124654e-324|t|9999-12-31|23:59:59.999999|2024-02-29 12:34:56.789012|2000-01-01 00:00:00+00',
      '3|0|0|0|0.0000000001|1.1754944e-38|2.2250738585072014e-308|\\N|\\N|\\N|\\N|\\N',
      '4|\\N|\\N|\\N|\\N|-0|NaN|\\N|\\N|\\N|\\N|infinity',
      '',
    ]);
  });

  it("prints a REAL with Redshift's digits: 6 by default, at most 8, one short of exact", async () => {
    const query = 'SELECT 1000.00006::real AS r, 0.1::float8 AS d';
    const byDefault = await unload(query, `${CONTRACT} PARALLEL OFF`);
    expect(await file(`${byDefault}000`)).toBe('1000|0.1\n');
    const widest = await unload(query, `${CONTRACT} PARALLEL OFF`, undefined, [
      'SET extra_float_digits TO 2',
    ]);
    // The float4 nearest 1000.00006 is 1000.00006103515625; 1000.0001 reads back as another.
    expect(await file(`${widest}000`)).toBe('1000.0001|0.10000000000000001\n');
    await expect(
      unload(query, CONTRACT, undefined, ['SET extra_float_digits TO 3']),
    ).rejects.toThrow(/extra_float_digits 3 is outside Redshift's range -15 to 2/);
  });

  it('keeps a 64 KB value whole on its line', async () => {
    const prefix = await unload(`SELECT id, note FROM sales."Notes" WHERE id = 11`, CONTRACT);
    expect(await file(`${prefix}0000_part_00`)).toBe(`11|${'x'.repeat(65536)}\n`);
    expect(await file(`${prefix}0001_part_00`)).toBe('');
  });
});

describe('UNLOAD emulator: PostgreSQL builds the lines', () => {
  const mixed = `SELECT id, flag, code, addr, doc, tags, span, amount, blob, note, r, d, day
                   FROM sales.mixed ORDER BY id`;
  const columns: UnloadColumn[] = [
    ['id', 'integer'],
    ['flag', 'boolean'],
    ['code', 'character', true],
    ['addr', 'inet'],
    ['doc', 'jsonb'],
    ['tags', 'text[]'],
    ['span', 'interval'],
    ['amount', 'numeric'],
    ['blob', 'bytea'],
    ['note', 'character varying', true],
    ['r', 'real'],
    ['d', 'double precision'],
    ['day', 'date'],
  ].map(([name, type, character]) => ({
    name: name as string,
    type: type as string,
    character: character === true,
    binary: type === 'bytea',
    ...(type === 'real' ? { significantDigits: 6 } : {}),
    ...(type === 'double precision' ? { significantDigits: 15 } : {}),
  }));

  beforeAll(async () => {
    await source.query(
      `CREATE TABLE sales.mixed (id int, flag boolean, code char(5), addr inet, doc jsonb, tags text[],
         span interval, amount numeric, blob bytea, note varchar(100), r real, d double precision, day date)`,
    );
    await source.query(
      `INSERT INTO sales.mixed VALUES
         (1, true, 'ab', '10.0.0.1', '{"a": "b\\\\c | d"}', ARRAY['x y', 'q"u', NULL, 'b\\\\s'],
          '1 day 02:03:04', 1.50, '\\x00ff', E'a|b\\\\c\\nd\\re\\tf\\bg', 0.1, 1e-300, '2024-02-29'),
         (2, false, 'abcde', '10.0.0.0/8', 'null', '{}', '-1 mons', -0.0001, '\\x', '', '-0', 'NaN', '0001-01-01'),
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
         (4, true, '|\\\\', '::1', '[1, "|"]', ARRAY['|'], '0', 1e20, '\\x5c7c', '\\N', 'Infinity', '-Infinity', '9999-12-31')`,
    );
  });

  /** The rows as the server prints them, each through formatUnloadLine, dealt over `streams`. */
  async function expectedFiles(streams: number): Promise<string[]> {
    const { rows } = await source.query<string[]>({
      text: mixed,
      rowMode: 'array',
      types: { getTypeParser: () => (value: string) => value },
    });
    const files = Array.from({ length: streams }, () => '');
    rows.forEach((row, index) => {
      files[index % streams] += formatUnloadLine(row, columns, {
        delimiter: '|',
        nullAs: '\\N',
        escape: true,
      });
    });
    return files;
  }

  it('writes the bytes formatUnloadLine writes, value by value, for types whose text needs care', async () => {
    const serial = await unload(mixed, `${CONTRACT} PARALLEL OFF`);
    expect([await file(`${serial}000`)]).toEqual(await expectedFiles(1));
    const parallel = await unload(mixed, CONTRACT);
    expect([await file(`${parallel}0000_part_00`), await file(`${parallel}0001_part_00`)]).toEqual(
      await expectedFiles(2),
    );
  });

  it('reads every slice on the snapshot the batch took first, not rows committed since', async () => {
    await source.query(
      `CREATE TABLE sales.growing AS SELECT g AS id FROM generate_series(1, 100) AS g`,
    );
    const prefix = 'runs/snapshot/t/';
    const id = await warehouse.submitBatch(
      [
        'SELECT count(*) FROM sales.growing',
        'SELECT pg_sleep(1)',
        `UNLOAD ('SELECT id FROM sales.growing ORDER BY id') TO 's3://${BUCKET}/${prefix}' IAM_ROLE 'r' ${CONTRACT}`,
      ],
      'snapshot',
    );
    // Committed while the batch sleeps: after its snapshot, before its UNLOAD.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await source.query('INSERT INTO sales.growing SELECT g FROM generate_series(101, 200) AS g');
    expect(await settle(id)).toEqual({ state: 'done', status: 'FINISHED' });
    expect(JSON.parse(await file(`${prefix}manifest`)).meta.record_count).toBe(100);
    const lines = `${await file(`${prefix}0000_part_00`)}${await file(`${prefix}0001_part_00`)}`;
    expect(
      lines
        .split('\n')
        .filter(Boolean)
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 100 }, (_, index) => index + 1));
  });

  it('gives every row to exactly one slice when the plan would read in parallel', async () => {
    await source.query(
      `CREATE TABLE sales.wide AS SELECT g AS id, repeat('w', 200) AS pad FROM generate_series(1, 50000) AS g`,
    );
    await source.query('ANALYZE sales.wide');
    // Plans that read the table with parallel workers, whose rows arrive in no fixed order.
    const parallelPlans = [
      'SET parallel_setup_cost TO 0',
      'SET parallel_tuple_cost TO 0',
      'SET min_parallel_table_scan_size TO 0',
      'SET max_parallel_workers_per_gather TO 4',
    ];
    const prefix = await unload('SELECT id FROM sales.wide', CONTRACT, undefined, parallelPlans);
    const lines = `${await file(`${prefix}0000_part_00`)}${await file(`${prefix}0001_part_00`)}`;
    const ids = lines.split('\n').filter(Boolean).map(Number);
    expect(ids.length).toBe(50000);
    expect(new Set(ids).size).toBe(50000);
  });

  it('stops every slice when the UNLOAD is cancelled', async () => {
    const slow = `SELECT g, pg_sleep(0.01) FROM generate_series(1, 2000) AS g`;
    const id = await warehouse.submitBatch(
      [`UNLOAD ('${slow}') TO 's3://${BUCKET}/runs/cancelled/t/' IAM_ROLE 'r' ${CONTRACT}`],
      'cancelled',
    );
    const sessions = async () => {
      const { rows } = await source.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'COPY (%pg_sleep%'`,
      );
      return rows[0]!.n;
    };
    for (let attempt = 0; attempt < 100 && (await sessions()) < 2; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await sessions()).toBe(2);
    const cancelled = Date.now();
    expect(await warehouse.cancel(id)).toBe(true);
    expect(await settle(id)).toMatchObject({ state: 'failed', status: 'ABORTED' });
    // Each slice alone would sleep 20 s.
    expect(Date.now() - cancelled).toBeLessThan(5000);
    for (let attempt = 0; attempt < 100 && (await sessions()) > 0; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await sessions()).toBe(0);
  });

  it("reads the batch's own changes and temporary tables, which other sessions cannot see, on its own session", async () => {
    const prefix = await unload(`SELECT id FROM scratch ORDER BY id`, CONTRACT, undefined, [
      'CREATE TEMPORARY TABLE scratch AS SELECT g AS id FROM generate_series(1, 5) AS g',
    ]);
    expect(await file(`${prefix}0000_part_00`)).toBe('1\n3\n5\n');
    expect(await file(`${prefix}0001_part_00`)).toBe('2\n4\n');
  });
});

describe('UNLOAD emulator: files and manifest', () => {
  it('reports its progress at the end: rows and MiB written, with rates', async () => {
    const lines: string[] = [];
    const reporting = new LocalWarehouse({
      sourceUrl,
      s3Dir,
      onProgress: (line) => lines.push(line),
    });
    try {
      const statement = `UNLOAD ('SELECT id FROM sales."Notes" WHERE id <= 5') TO 's3://${BUCKET}/runs/progress/t/' IAM_ROLE 'r' ${CONTRACT}`;
      const id = await reporting.submitBatch([statement], 'progress');
      expect(await settle(id, reporting)).toEqual({ state: 'done', status: 'FINISHED' });
    } finally {
      await reporting.close();
    }
    expect(lines.at(-1)).toMatch(
      /^ {2}UNLOAD to s3:\/\/unload-bucket\/runs\/progress\/t\/: 5 rows, 0\.0 MiB written in \d+\.\d s \([\d,]+ rows\/s, \d+\.\d MiB\/s\)$/,
    );
  });

  it('leaves a 0-byte file for each slice without rows and lists it in the VERBOSE manifest', async () => {
    const fourSlices = new LocalWarehouse({ sourceUrl, s3Dir, slices: 4 });
    try {
      const statement = `UNLOAD ('SELECT id, note FROM sales."Notes" WHERE id IN (5, 9) ORDER BY id') TO 's3://${BUCKET}/runs/slices/t/' IAM_ROLE 'r' ${CONTRACT}`;
      const id = await fourSlices.submitBatch([statement], 'four slices');
      expect(await settle(id, fourSlices)).toEqual({ state: 'done', status: 'FINISHED' });
    } finally {
      await fourSlices.close();
    }
    const prefix = 'runs/slices/t/';
    const manifest = JSON.parse(await file(`${prefix}manifest`));
    expect(manifest).toEqual({
      entries: [
        {
          url: `s3://${BUCKET}/${prefix}0000_part_00`,
          meta: { content_length: 7, record_count: 1 },
        },
        {
          url: `s3://${BUCKET}/${prefix}0001_part_00`,
          meta: { content_length: 17, record_count: 1 },
        },
        {
          url: `s3://${BUCKET}/${prefix}0002_part_00`,
          meta: { content_length: 0, record_count: 0 },
        },
        {
          url: `s3://${BUCKET}/${prefix}0003_part_00`,
          meta: { content_length: 0, record_count: 0 },
        },
      ],
      schema: {
        elements: [
          { name: 'id', type: { base: 'integer' } },
          { name: 'note', type: { base: 'character varying' } },
        ],
      },
      meta: { content_length: 24, record_count: 2 },
      author: { name: 'Amazon Redshift', version: '1.0.0' },
    });
    expect(await file(`${prefix}0002_part_00`)).toBe('');
    expect(await file(`${prefix}0000_part_00`)).toBe('5|a\\|b\n');
    expect(await file(`${prefix}0001_part_00`)).toBe(`9|quotes ' and "\n`);
  });

  it('deals the rows over more slices than it opens sessions for, each line into its slice', async () => {
    const sixSlices = new LocalWarehouse({ sourceUrl, s3Dir, slices: 6 });
    try {
      const statement = `UNLOAD ('SELECT g FROM generate_series(1, 14) AS g ORDER BY g') TO 's3://${BUCKET}/runs/six/t/' IAM_ROLE 'r' ${CONTRACT}`;
      const id = await sixSlices.submitBatch([statement], 'six slices');
      expect(await settle(id, sixSlices)).toEqual({ state: 'done', status: 'FINISHED' });
    } finally {
      await sixSlices.close();
    }
    const files = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((slice) => file(`runs/six/t/000${slice}_part_00`)),
    );
    expect(files).toEqual(['1\n7\n13\n', '2\n8\n14\n', '3\n9\n', '4\n10\n', '5\n11\n', '6\n12\n']);
  });

  it('writes only empty files for no rows, and a plain manifest without VERBOSE', async () => {
    const prefix = await unload(
      `SELECT id FROM sales."Notes" WHERE false`,
      "DELIMITER '|' MANIFEST",
    );
    expect(await store.listKeys(BUCKET, prefix)).toEqual([
      `${prefix}0000_part_00`,
      `${prefix}0001_part_00`,
      `${prefix}manifest`,
    ]);
    expect(await file(`${prefix}0000_part_00`)).toBe('');
    expect(JSON.parse(await file(`${prefix}manifest`))).toEqual({
      entries: [
        { url: `s3://${BUCKET}/${prefix}0000_part_00` },
        { url: `s3://${BUCKET}/${prefix}0001_part_00` },
      ],
    });
  });

  it('splits at MAXFILESIZE into _part_01, ... and, with PARALLEL OFF, into 000, 001, ...', async () => {
    // 11,000 lines of about 1,006 bytes: about 5.5 MB per slice, over a 5 MB limit.
    const query = `SELECT g, repeat('x', 1000) FROM generate_series(1, 11000) AS g ORDER BY g`;
    let totalBytes = 0;
    for (let g = 1; g <= 11000; g += 1) totalBytes += String(g).length + 1002;
    const parallel = await unload(query, `${CONTRACT} MAXFILESIZE 5 MB`);
    const manifest = JSON.parse(await file(`${parallel}manifest`));
    const entries = manifest.entries.map(
      (entry: { url: string; meta: { content_length: number; record_count: number } }) => ({
        key: entry.url.slice(`s3://${BUCKET}/`.length),
        ...entry.meta,
      }),
    );
    expect(entries.map((entry: { key: string }) => entry.key)).toEqual([
      `${parallel}0000_part_00`,
      `${parallel}0000_part_01`,
      `${parallel}0001_part_00`,
      `${parallel}0001_part_01`,
    ]);
    for (const entry of entries) expect(entry.content_length).toBeLessThanOrEqual(5 * MB);
    // Each first part was closed only because the next line would not fit.
    expect(entries[0].content_length).toBeGreaterThan(5 * MB - 1007);
    expect(entries[2].content_length).toBeGreaterThan(5 * MB - 1007);
    expect(manifest.meta).toEqual({ content_length: totalBytes, record_count: 11000 });
    for (const entry of entries) {
      expect(Buffer.byteLength(await file(entry.key))).toBe(entry.content_length);
    }
    const serial = await unload(query, `${CONTRACT} MAXFILESIZE 5 MB PARALLEL OFF`);
    expect(await store.listKeys(BUCKET, serial)).toEqual([
      `${serial}000`,
      `${serial}001`,
      `${serial}002`,
      `${serial}manifest`,
    ]);
    const firstLines = (await file(`${serial}000`)).split('\n').slice(0, 2);
    expect(firstLines).toEqual([`1|${'x'.repeat(1000)}`, `2|${'x'.repeat(1000)}`]);
  });

  it('refuses a destination that already has files unless ALLOWOVERWRITE, in Redshift words', async () => {
    const prefix = await unload(`SELECT 1`, CONTRACT);
    await expect(unload(`SELECT 2`, CONTRACT, prefix)).rejects.toThrow(
      'Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.',
    );
    await unload(`SELECT 2`, `${CONTRACT} ALLOWOVERWRITE`, prefix);
    expect(await file(`${prefix}0000_part_00`)).toBe('2\n');
  });
});

describe('UnloadFileWriter', () => {
  /** A bucket in memory, to see exactly what the writer hands over. */
  function memoryBucket(): UnloadBucket & { objects: Map<string, string> } {
    const objects = new Map<string, string>();
    return {
      objects,
      async listKeys() {
        return [...objects.keys()];
      },
      async createObject(_bucket, key) {
        objects.set(key, '');
      },
      async appendToObject(_bucket, key, bytes) {
        objects.set(key, (objects.get(key) ?? '') + bytes.toString('utf8'));
      },
    };
  }

  it('closes a file before a line would take it past the limit; a longer line gets a file of its own', async () => {
    const bucket = memoryBucket();
    const writer = new UnloadFileWriter(
      bucket,
      { bucket: 'b', keyPrefix: 'p/' },
      { parallel: false, maxFileSizeBytes: 10, slices: 3 },
    );
    for (const line of ['aaaa\n', 'bbbb\n', 'c\n', 'dddddddddddddd\n', 'e\n'])
      writer.add(Buffer.from(line));
    const files = await writer.finish();
    expect(files).toEqual([
      { url: 's3://b/p/000', key: 'p/000', bytes: 10, records: 2 },
      { url: 's3://b/p/001', key: 'p/001', bytes: 2, records: 1 },
      { url: 's3://b/p/002', key: 'p/002', bytes: 15, records: 1 },
      { url: 's3://b/p/003', key: 'p/003', bytes: 2, records: 1 },
    ]);
    expect(bucket.objects.get('p/000')).toBe('aaaa\nbbbb\n');
    expect(bucket.objects.get('p/002')).toBe('dddddddddddddd\n');
  });

  it('deals rows over the slices in turn', async () => {
    const bucket = memoryBucket();
    const writer = new UnloadFileWriter(
      bucket,
      { bucket: 'b', keyPrefix: 'p/t_' },
      { parallel: true, maxFileSizeBytes: 100, slices: 3 },
    );
    for (const line of ['1\n', '2\n', '3\n', '4\n']) writer.add(Buffer.from(line));
    await writer.finish();
    expect(Object.fromEntries(bucket.objects)).toEqual({
      'p/t_0000_part_00': '1\n4\n',
      'p/t_0001_part_00': '2\n',
      'p/t_0002_part_00': '3\n',
    });
  });
});
