/**
 * Importing UNLOAD's text files into staging through `aws_s3.table_import_from_s3`, on real
 * PostgreSQL with the local emulators' aws_s3 shim (objects are files in a folder, written by
 * the UNLOAD emulator's line writer); and the Data API's 45 s cut-off through the real
 * adapter over a mocked SDK.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ExecuteStatementCommand,
  RDSDataClient,
  StatementTimeoutException,
} from '@aws-sdk/client-rds-data';
import { mockClient } from 'aws-sdk-client-mock';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { RdsDataSqlClient } from '../lambdas/adapters/rds-data-sql-client';
import { FileImportError, ImportTimeoutError, RecordCountError } from '../lambdas/core/load/errors';
import {
  buildImportStatement,
  COPY_OPTIONS,
  importFile,
  importFilesFrom,
  importParameters,
  parseImportResult,
} from '../lambdas/core/load/import';
import { createStagingTable } from '../lambdas/core/load/staging';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import type { DataFile, TableTransfer } from '../lambdas/core/transfer/types';
import { installAwsS3Shim } from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { formatUnloadLine, type UnloadColumn } from '../local/emulators/unload-format';
import { freshDatabase } from './support/db';

const BUCKET = 'run-files';
const REGION = 'eu-west-1';

let admin: pg.Client;
let sql: PgSqlClient;
let bucket: LocalObjectStore;

/** Live has odd names on purpose: every name reaches aws_s3 through a parameter. */
const transfer: TableTransfer = {
  table: {
    source: { schema: 'public', name: 'Events' },
    target: { schema: 'public', name: 'Events' },
    strategy: 'rename',
    allowEmpty: false,
  },
  staging: { schema: STAGING_SCHEMA, name: 'Events "run"' },
  columns: [
    { name: 'id', selectExpression: '"id"', targetType: 'integer', figures: 'integer' },
    { name: 'Label', selectExpression: '"Label"', targetType: 'text', figures: 'octets' },
    { name: 'at', selectExpression: '"at"', targetType: 'timestamptz', figures: 'timestamptz' },
  ],
  s3Prefix: `s3://${BUCKET}/runs/r1/events/`,
};

type Line = [number, string | null, string | null];

/** The file's columns as the UNLOAD emulator sees them: only `Label` is text, and escaped. */
const UNLOADED: UnloadColumn[] = [
  { name: 'id', type: 'integer', character: false, binary: false },
  { name: 'Label', type: 'character varying', character: true, binary: false },
  { name: 'at', type: 'timestamp with time zone', character: false, binary: false },
];

/** Writes an object; returns its size in bytes. */
async function putText(key: string, text: string): Promise<number> {
  await bucket.putText(BUCKET, key, text);
  return Buffer.byteLength(text);
}

/** A data file as UNLOAD writes it (text format, ESCAPE, NULL AS '\N'). */
async function putFile(key: string, rows: Line[], records = rows.length): Promise<DataFile> {
  const text = rows
    .map(([id, label, at]) =>
      formatUnloadLine([String(id), label, at], UNLOADED, {
        delimiter: '|',
        nullAs: '\\N',
        escape: true,
      }),
    )
    .join('');
  return { bucket: BUCKET, key, bytes: await putText(key, text), records };
}

async function stagingRows() {
  const { rows } = await admin.query(
    `SELECT id, "Label" AS label, to_char("at" AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS at, generated
     FROM ${STAGING_SCHEMA}."Events ""run""" ORDER BY id`,
  );
  return rows;
}

beforeAll(async () => {
  const db = await freshDatabase();
  admin = await db.connect('test-admin');
  sql = new PgSqlClient(admin);
  // World-readable: the PostgreSQL server reads the objects itself.
  const s3Dir = await mkdtemp(join(tmpdir(), 'load-import-s3-'));
  await chmod(s3Dir, 0o755);
  bucket = new LocalObjectStore(s3Dir);
  await installAwsS3Shim(admin, { s3Dir });
  await installSchema(sql);
  await admin.query(`
    CREATE TABLE public."Events" (
      id integer PRIMARY KEY,
      "Label" text,
      at timestamptz NOT NULL,
      generated text GENERATED ALWAYS AS ('#' || id) STORED
    )`);
});

beforeEach(async () => {
  await createStagingTable(sql, transfer);
});

describe('the import statement', () => {
  it('passes the table and columns as quoted identifiers and the COPY options matching UNLOAD', () => {
    expect(buildImportStatement()).toBe(
      'SELECT aws_s3.table_import_from_s3(:tableName, :columnList, :options, aws_commons.create_s3_uri(:bucket, :key, :region)) AS result',
    );
    const file = { bucket: BUCKET, key: 'runs/r1/events/0000_part_00', bytes: 10, records: 1 };
    expect(
      importParameters({
        staging: transfer.staging,
        columns: ['id', 'Label'],
        file,
        region: REGION,
      }),
    ).toEqual({
      tableName: '"redshift_sync_staging"."Events ""run"""',
      columnList: '"id", "Label"',
      options: `(FORMAT text, DELIMITER '|', NULL '\\N', ENCODING 'UTF8')`,
      bucket: BUCKET,
      key: 'runs/r1/events/0000_part_00',
      region: REGION,
    });
    expect(COPY_OPTIONS).toContain(`NULL '\\N'`);
  });

  it("reads aws_s3's result text", () => {
    expect(
      parseImportResult(
        '87701673 rows imported into relation "aozora" from file utf8_all.csv of 6539180310 bytes',
      ),
    ).toEqual({ rows: 87701673, bytes: 6539180310 });
    expect(parseImportResult('1 row imported')).toBeNull();
  });
});

describe('importFile', () => {
  it('loads every value as written, escapes, NULLs and empty strings included', async () => {
    const file = await putFile('runs/r1/events/0000_part_00', [
      [1, 'pipe | and backslash \\ inside', '2024-01-02 03:04:05+00'],
      [2, 'two\nlines\r\nand a tab\t', '2024-01-02 03:04:06+00'],
      [3, null, '2024-01-02 03:04:07+00'],
      [4, '', '2024-01-02 03:04:08+00'],
      [5, 'ünïcödé ✓ \\N', '2024-01-02 03:04:09+00'],
    ]);
    const imported = await importFile(sql, {
      staging: transfer.staging,
      columns: ['id', 'Label', 'at'],
      file,
      region: REGION,
    });
    expect(imported).toEqual({ key: file.key, rows: 5, bytes: file.bytes });
    expect(await stagingRows()).toEqual([
      {
        id: 1,
        label: 'pipe | and backslash \\ inside',
        at: '2024-01-02 03:04:05',
        generated: '#1',
      },
      { id: 2, label: 'two\nlines\r\nand a tab\t', at: '2024-01-02 03:04:06', generated: '#2' },
      { id: 3, label: null, at: '2024-01-02 03:04:07', generated: '#3' },
      { id: 4, label: '', at: '2024-01-02 03:04:08', generated: '#4' },
      { id: 5, label: 'ünïcödé ✓ \\N', at: '2024-01-02 03:04:09', generated: '#5' },
    ]);
  });

  it('fails, naming the file and both numbers, when the manifest claims more rows than the file holds', async () => {
    const file = await putFile(
      'runs/r1/events/0001_part_00',
      [[7, 'x', '2024-01-01 00:00:00+00']],
      4,
    );
    const error = await importFile(sql, {
      staging: transfer.staging,
      columns: ['id', 'Label', 'at'],
      file,
      region: REGION,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RecordCountError);
    expect(error).toMatchObject({ key: file.key, expected: 4, imported: 1 });
    expect((error as Error).message).toMatch(
      /s3:\/\/run-files\/runs\/r1\/events\/0001_part_00 loaded 1 rows, but the UNLOAD manifest lists 4 records/,
    );
  });

  it('names the file when its import fails, and leaves none of its rows behind', async () => {
    const bytes = await putText(
      'runs/r1/events/0002_part_00',
      '1|ok|2024-01-01 00:00:00+00\n2|bad|not a time\n',
    );
    const error = await importFile(sql, {
      staging: transfer.staging,
      columns: ['id', 'Label', 'at'],
      file: { bucket: BUCKET, key: 'runs/r1/events/0002_part_00', bytes, records: 2 },
      region: REGION,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileImportError);
    expect((error as Error).message).toMatch(
      /the import of s3:\/\/run-files\/runs\/r1\/events\/0002_part_00 into redshift_sync_staging\."Events ""run""" failed: .*not a time/,
    );
    expect(await stagingRows()).toEqual([]);
  });
});

describe('importFilesFrom', () => {
  const items = (files: readonly DataFile[]) =>
    files.map((file) => ({
      file,
      staging: transfer.staging,
      columns: transfer.columns.map((c) => c.name),
    }));

  it('imports all files side by side, telling each one as it is in', async () => {
    const files = await Promise.all(
      [0, 1, 2, 3, 4, 5].map((part) =>
        putFile(`runs/r2/events/000${part}_part_00`, [
          [part * 10 + 1, `p${part}a`, '2024-01-01 00:00:00+00'],
          [part * 10 + 2, `p${part}b`, '2024-01-01 00:00:00+00'],
        ]),
      ),
    );
    const told: { key: string; rows: number; bytes: number }[] = [];
    const next = await importFilesFrom(sql, items(files), {
      region: REGION,
      concurrency: 3,
      onImported: (_item, imported) => void told.push(imported),
    });
    expect(next).toBe(6);
    expect(told.map((file) => file.key).sort()).toEqual(files.map((file) => file.key));
    expect(told.reduce((sum, file) => sum + file.rows, 0)).toBe(12);
    expect(told.reduce((sum, file) => sum + file.bytes, 0)).toBe(
      files.reduce((sum, file) => sum + file.bytes, 0),
    );
    expect(await stagingRows()).toHaveLength(12);
  });

  it('starts from a given file and stops starting files when told to', async () => {
    const files = await Promise.all(
      [0, 1, 2, 3].map((part) =>
        putFile(`runs/r4/events/000${part}_part_00`, [[40 + part, 'x', '2024-01-01 00:00:00+00']]),
      ),
    );
    let started = 0;
    const next = await importFilesFrom(sql, items(files), {
      region: REGION,
      concurrency: 1,
      from: 1,
      keepStarting: () => started++ < 2,
    });
    expect(next).toBe(3);
    expect((await stagingRows()).map((row) => row.id)).toEqual([41, 42]);
  });

  it('starts no further file after a failure, lets the running ones end, and throws the failure', async () => {
    const good = await putFile('runs/r3/events/0000_part_00', [[1, 'a', '2024-01-01 00:00:00+00']]);
    const missing: DataFile = {
      bucket: BUCKET,
      key: 'runs/r3/events/0001_part_00',
      bytes: 9,
      records: 1,
    };
    const later = await putFile('runs/r3/events/0002_part_00', [
      [3, 'c', '2024-01-01 00:00:00+00'],
    ]);
    await expect(
      importFilesFrom(sql, items([good, missing, later]), { region: REGION, concurrency: 1 }),
    ).rejects.toThrow(
      /the import of s3:\/\/run-files\/runs\/r3\/events\/0001_part_00 into .* failed/,
    );
    expect((await stagingRows()).map((row) => row.id)).toEqual([1]);
  });

  it('refuses a concurrency below 1', async () => {
    await expect(importFilesFrom(sql, [], { region: REGION, concurrency: 0 })).rejects.toThrow(
      /concurrency is 0/,
    );
  });
});

describe('importFile over the RDS Data API', () => {
  it("reports the Data API's 45 s cut-off as a timeout to act on, never as a partial load", async () => {
    const sdk = mockClient(RDSDataClient);
    sdk
      .on(ExecuteStatementCommand)
      .rejects(new StatementTimeoutException({ message: 'Request timed out', $metadata: {} }));
    const db = new RdsDataSqlClient(new RDSDataClient({ region: REGION }), {
      resourceArn: 'arn:aws:rds:eu-west-1:123456789012:cluster:aurora',
      secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aurora',
      database: 'analytics',
    });
    const file = {
      bucket: BUCKET,
      key: 'runs/r4/events/0000_part_00',
      bytes: 6_000_000_000,
      records: 9,
    };
    const error = await importFile(db, {
      staging: transfer.staging,
      columns: ['id'],
      file,
      region: REGION,
    }).catch((e: unknown) => e);
    const [call] = sdk.commandCalls(ExecuteStatementCommand);
    sdk.restore();
    expect(call!.args[0].input).toMatchObject({ sql: buildImportStatement() });
    expect(error).toBeInstanceOf(ImportTimeoutError);
    expect(error).toMatchObject({ name: 'ImportTimeoutError', key: file.key });
    expect((error as Error).message).toMatch(
      /the import of s3:\/\/run-files\/runs\/r4\/events\/0000_part_00 \(6000000000 bytes\) did not finish within the Data API's 45 s limit and was rolled back; lower unload.maxFileSizeMb/,
    );
  });
});
