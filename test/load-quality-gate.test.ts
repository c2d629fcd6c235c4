/**
 * The quality gate: the pure comparison of source and staging figures, and the whole check
 * on real PostgreSQL, where a source table stands in for Redshift (the figures query is the
 * same SQL on both), its rows travel as UNLOAD text files (the UNLOAD emulator's line writer),
 * and staging is imported from them through the local aws_s3 shim.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { quoteQualified } from '../lambdas/core/identifiers';
import { QualityGateError } from '../lambdas/core/load/errors';
import { importFilesFrom } from '../lambdas/core/load/import';
import {
  checkAndPrepareStaging,
  FiguresQueryStoppedError,
  figuresMarker,
  formatReport,
  qualityGate,
  stagingFigures,
} from '../lambdas/core/load/quality-gate';
import { createStagingTable } from '../lambdas/core/load/staging';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import { LongStatementStillRunningError } from '../lambdas/core/swap/long-statements';
import { buildFiguresQuery, parseFigures } from '../lambdas/core/transfer/figures';
import type {
  ColumnFigures,
  DataFile,
  SyncTable,
  TableFigures,
  TableTransfer,
} from '../lambdas/core/transfer/types';
import { installAwsS3Shim } from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { formatUnloadLine, type UnloadColumn } from '../local/emulators/unload-format';
import { CutOffSqlClient, holdLock, until } from './support/data-api-cutoff';
import { freshDatabase, type TestDatabase } from './support/db';

const table: SyncTable = {
  source: { schema: 'source', name: 'readings' },
  target: { schema: 'public', name: 'readings' },
  strategy: 'rename',
  allowEmpty: false,
};

function figures(rows: number, columns: ColumnFigures[]): TableFigures {
  return { rows, columns };
}

const source = figures(3, [
  { column: 'id', kind: 'integer', nulls: 0, min: '1', max: '3' },
  { column: 'value', kind: 'float8', nulls: 1, min: '0.1', max: '2.5' },
  { column: 'ratio', kind: 'float4', nulls: 0, min: '1.23457', max: '2' },
  { column: 'label', kind: 'octets', nulls: 0, octets: '12' },
  { column: 'ok', kind: 'boolean', nulls: 0, trues: 2 },
]);

function withColumn(base: TableFigures, index: number, change: Partial<ColumnFigures>) {
  return {
    ...base,
    columns: base.columns.map((column, i) => (i === index ? { ...column, ...change } : column)),
  };
}

describe('qualityGate (pure)', () => {
  it('passes when every figure agrees, floats compared at their printed precision', () => {
    const staging = withColumn(
      withColumn(source, 1, { min: '0.1000000000000000055511', max: '2.50000000000000' }),
      2,
      { min: '1.2345678' },
    );
    expect(qualityGate({ table, source, staging, liveRows: 10 })).toEqual({
      passed: true,
      rows: 3,
    });
  });

  it('fails on a float that differs within the digits both engines print', () => {
    const verdict = qualityGate({
      table,
      source,
      staging: withColumn(source, 1, { max: '2.50000000001' }),
      liveRows: 10,
    });
    expect(verdict).toMatchObject({
      passed: false,
      problems: ['value: max: 2.5 in Redshift, 2.50000000001 in staging.'],
    });
  });

  it('fails on a row count that differs and shows both numbers side by side', () => {
    const verdict = qualityGate({ table, source, staging: { ...source, rows: 2 }, liveRows: 10 });
    expect(verdict.passed).toBe(false);
    if (verdict.passed) return;
    expect(verdict.problems).toEqual([
      'row count: Redshift unloaded 3 rows, staging holds 2 (a file was lost, imported twice or changed).',
    ]);
    expect(verdict.report).toBe(
      ['figure | Redshift | staging', 'rows   | 3        | 2'].join('\n'),
    );
  });

  it('fails on a NULL count, a total length and a true count that differ', () => {
    let staging = withColumn(source, 0, { nulls: 1 });
    staging = withColumn(staging, 3, { octets: '11' });
    staging = withColumn(staging, 4, { trues: 3 });
    const verdict = qualityGate({ table, source, staging, liveRows: null });
    expect(verdict.passed).toBe(false);
    if (verdict.passed) return;
    expect(verdict.problems).toEqual([
      'id: NULL count: 0 in Redshift, 1 in staging.',
      'label: total bytes: 12 in Redshift, 11 in staging.',
      'ok: true count: 2 in Redshift, 3 in staging.',
    ]);
    expect(verdict.report.split('\n')).toEqual([
      'figure             | Redshift | staging',
      'id: NULL count     | 0        | 1',
      'label: total bytes | 12       | 11',
      'ok: true count     | 2        | 3',
    ]);
  });

  it('compares min and max exactly as text for exact kinds, and a NULL with a value', () => {
    const decimal = figures(1, [
      { column: 'price', kind: 'decimal', nulls: 0, min: '1.50', max: null },
    ]);
    const verdict = qualityGate({
      table,
      source: decimal,
      staging: withColumn(decimal, 0, { min: '1.5', max: '1.50' }),
      liveRows: null,
    });
    expect(verdict).toMatchObject({
      passed: false,
      problems: [
        'price: min: 1.50 in Redshift, 1.5 in staging.',
        'price: max: NULL in Redshift, 1.50 in staging.',
      ],
    });
  });

  it('refuses an empty source over a live table with rows unless allowEmpty is set', () => {
    const empty = figures(0, [{ column: 'id', kind: 'integer', nulls: 0, min: null, max: null }]);
    const verdict = qualityGate({ table, source: empty, staging: empty, liveRows: 1200 });
    expect(verdict).toMatchObject({ passed: false });
    expect(!verdict.passed && verdict.problems[0]).toMatch(
      /the source source\.readings has no rows, but the live table public\.readings has 1200; .*Set allowEmpty: true in the table's config if an empty table is expected/,
    );
    expect(!verdict.passed && verdict.report).toBe(
      'figure                  | Redshift | staging\nrows (live table: 1200) | 0        | 0',
    );
    expect(
      qualityGate({
        table: { ...table, allowEmpty: true },
        source: empty,
        staging: empty,
        liveRows: 1200,
      }),
    ).toEqual({ passed: true, rows: 0 });
    expect(qualityGate({ table, source: empty, staging: empty, liveRows: null })).toEqual({
      passed: true,
      rows: 0,
    });
    expect(qualityGate({ table, source: empty, staging: empty, liveRows: 0 }).passed).toBe(true);
  });

  it("marks the figures statement with a comment that staging's name cannot end", () => {
    expect(figuresMarker({ schema: 'redshift_sync_staging', name: 'a*/b c' }, 'n-1')).toBe(
      'redshift-aurora-sync figures redshift_sync_staging.a__b_c n-1',
    );
  });

  it('formats the report with aligned columns', () => {
    expect(formatReport([{ figure: 'a', source: '123456789', staging: '1' }])).toBe(
      'figure | Redshift  | staging\na      | 123456789 | 1',
    );
  });
});

describe('the quality gate on real PostgreSQL', () => {
  let db: TestDatabase;
  let admin: pg.Client;
  let sql: PgSqlClient;
  let bucket: LocalObjectStore;
  let runNumber = 0;

  const columns = [
    { name: 'id', selectExpression: '"id"', targetType: 'integer', figures: 'integer' },
    {
      name: 'value',
      selectExpression: '"value"',
      targetType: 'double precision',
      figures: 'float8',
    },
    { name: 'ratio', selectExpression: '"ratio"', targetType: 'real', figures: 'float4' },
    { name: 'label', selectExpression: '"label"', targetType: 'text', figures: 'octets' },
    { name: 'ok', selectExpression: '"ok"', targetType: 'boolean', figures: 'boolean' },
  ] as const satisfies TableTransfer['columns'];

  type SourceRow = [number, number | null, number, string | null, boolean];
  const UNLOADED: UnloadColumn[] = columns.map((column) => ({
    name: column.name,
    type: column.targetType,
    character: column.figures === 'octets',
    binary: false,
  }));
  const rows: SourceRow[] = Array.from({ length: 30 }, (_, i) => [
    i + 1,
    i % 7 === 0 ? null : (i + 1) / 3,
    Math.fround(1 / (i + 1)),
    i % 5 === 0 ? '' : `label ${i} | ünï`,
    i % 2 === 0,
  ]);

  function newTransfer(overrides: Partial<TableTransfer> = {}): TableTransfer {
    runNumber += 1;
    return {
      table,
      staging: { schema: STAGING_SCHEMA, name: `readings__run${runNumber}` },
      columns,
      s3Prefix: `s3://bucket/runs/${runNumber}/readings/`,
      ...overrides,
    };
  }

  /** "Redshift's" figures: the same query, over the source table. */
  async function sourceFigures(relation = 'source.readings'): Promise<TableFigures> {
    const [row] = await sql.query(buildFiguresQuery(relation, columns));
    return parseFigures(row!, columns);
  }

  /** Writes rows as UNLOAD would, in files of `perFile` rows. */
  async function unload(transfer: TableTransfer, data: readonly SourceRow[], perFile = 10) {
    const files: DataFile[] = [];
    for (let start = 0; start < data.length; start += perFile) {
      const part = data.slice(start, start + perFile);
      const key = `${transfer.s3Prefix.replace('s3://bucket/', '')}000${start / perFile}_part_00`;
      // UNLOAD prints floats at 15 (double) and 6 (real) significant digits.
      const text = part
        .map(([id, value, ratio, label, ok]) =>
          formatUnloadLine(
            [
              String(id),
              value === null ? null : String(Number(value.toPrecision(15))),
              String(Number(ratio.toPrecision(6))),
              label,
              ok ? 't' : 'f',
            ],
            UNLOADED,
            { delimiter: '|', nullAs: '\\N', escape: true },
          ),
        )
        .join('');
      await bucket.putText('bucket', key, text);
      files.push({ bucket: 'bucket', key, bytes: Buffer.byteLength(text), records: part.length });
    }
    return files;
  }

  async function load(transfer: TableTransfer, files: readonly DataFile[]) {
    await createStagingTable(sql, transfer);
    const columns = transfer.columns.map((column) => column.name);
    await importFilesFrom(
      sql,
      files.map((file) => ({ file, staging: transfer.staging, columns })),
      { region: 'eu-west-1', concurrency: 4 },
    );
  }

  beforeAll(async () => {
    db = await freshDatabase();
    admin = await db.connect('test-admin');
    sql = new PgSqlClient(admin);
    // World-readable: the PostgreSQL server reads the objects itself.
    const s3Dir = await mkdtemp(join(tmpdir(), 'load-gate-s3-'));
    await chmod(s3Dir, 0o755);
    bucket = new LocalObjectStore(s3Dir);
    await installAwsS3Shim(admin, { s3Dir });
    await installSchema(sql);
    await admin.query(`
      CREATE SCHEMA source;
      CREATE TABLE source.readings (id integer, value double precision, ratio real, label text, ok boolean);
      CREATE TABLE public.readings (
        id integer PRIMARY KEY, value double precision, ratio real, label text, ok boolean);
      CREATE INDEX readings_label ON public.readings (label) WHERE ok;
      INSERT INTO public.readings VALUES (1, 1, 1, 'old', true), (2, 2, 2, 'old', false);
    `);
    for (const row of rows) {
      await admin.query('INSERT INTO source.readings VALUES ($1, $2, $3, $4, $5)', row);
    }
  });

  it('passes a faithful load and builds the live indexes on staging', async () => {
    const transfer = newTransfer();
    await load(transfer, await unload(transfer, rows));
    const checked = await checkAndPrepareStaging(sql, transfer, await sourceFigures());
    expect(checked.rows).toBe(30);
    expect(checked.indexStatements).toHaveLength(2);
    const { rows: indexes } = await admin.query<{ definition: string }>(
      `SELECT pg_get_indexdef(indexrelid) AS definition FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1`,
      [quoteQualified(transfer.staging)],
    );
    expect(indexes.map((index) => index.definition)).toEqual([
      expect.stringMatching(/^CREATE INDEX .* USING btree \(label\) WHERE ok$/),
      expect.stringMatching(/^CREATE UNIQUE INDEX .* USING btree \(id\)$/),
    ]);
  });

  it('fails when a file was dropped, naming the row counts', async () => {
    const transfer = newTransfer();
    const files = await unload(transfer, rows);
    await load(transfer, files.slice(0, 2));
    const error = await checkAndPrepareStaging(sql, transfer, await sourceFigures()).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(QualityGateError);
    const gate = error as QualityGateError;
    expect(gate.problems[0]).toBe(
      'row count: Redshift unloaded 30 rows, staging holds 20 (a file was lost, imported twice or changed).',
    );
    expect(gate.report).toMatch(/^rows\s+\| 30\s+\| 20$/m);
    expect(gate.message).toContain('nothing was published');
    // Not prepared: no index was built on the failing staging table.
    const { rows: indexes } = await admin.query(
      'SELECT 1 FROM pg_index WHERE indrelid = $1::regclass',
      [quoteQualified(transfer.staging)],
    );
    expect(indexes).toEqual([]);
  });

  it('fails when a file was imported twice', async () => {
    const transfer = newTransfer();
    const files = await unload(transfer, rows);
    await load(transfer, [...files, files[1]!]);
    await expect(checkAndPrepareStaging(sql, transfer, await sourceFigures())).rejects.toThrow(
      /Redshift unloaded 30 rows, staging holds 40/,
    );
  });

  it('fails when empty strings came out as NULLs, on the NULL count', async () => {
    const transfer = newTransfer();
    const files = await unload(
      transfer,
      rows.map(([id, value, ratio, label, ok]): SourceRow => [id, value, ratio, label || null, ok]),
    );
    await load(transfer, files);
    const error = (await checkAndPrepareStaging(sql, transfer, await sourceFigures()).catch(
      (e: unknown) => e,
    )) as QualityGateError;
    expect(error).toBeInstanceOf(QualityGateError);
    expect(error.problems).toEqual(['label: NULL count: 0 in Redshift, 6 in staging.']);
  });

  it('fails when a value was changed on the way, on the figure it moves', async () => {
    const transfer = newTransfer();
    const changed = rows.map(
      (row): SourceRow => (row[0] === 30 ? [30, 10.5, row[2], row[3], row[4]] : row),
    );
    await load(transfer, await unload(transfer, changed));
    const error = (await checkAndPrepareStaging(sql, transfer, await sourceFigures()).catch(
      (e: unknown) => e,
    )) as QualityGateError;
    expect(error.problems).toEqual(['value: max: 10 in Redshift, 10.5 in staging.']);
  });

  it('refuses an empty source over a live table with rows, unless allowEmpty', async () => {
    await admin.query('CREATE TABLE source.empty (LIKE source.readings)');
    const emptySource = await sourceFigures('source.empty');
    const transfer = newTransfer();
    await load(transfer, []);
    await expect(checkAndPrepareStaging(sql, transfer, emptySource)).rejects.toThrow(
      /has no rows, but the live table public\.readings has 2; .*Set allowEmpty: true/,
    );
    const allowed = newTransfer({ table: { ...table, allowEmpty: true } });
    await load(allowed, []);
    expect((await checkAndPrepareStaging(sql, allowed, emptySource)).rows).toBe(0);
  });

  it("reads staging's figures with the shared query", async () => {
    const transfer = newTransfer();
    await load(transfer, await unload(transfer, rows.slice(0, 3)));
    const figures = await stagingFigures(sql, transfer);
    expect(figures.rows).toBe(3);
    expect(figures.columns[0]).toEqual({
      column: 'id',
      kind: 'integer',
      nulls: 0,
      min: '1',
      max: '3',
    });
    expect(figures.columns[4]).toEqual({ column: 'ok', kind: 'boolean', nulls: 0, trues: 2 });
  });

  describe('over a transport that cuts calls off after 300 ms, as the Data API does after 45 s', () => {
    const CUT_OFF_MS = 300;
    let pool: pg.Pool;
    let cutOffClient: CutOffSqlClient;
    const sleeps: number[] = [];
    /** Waits for real, but keeps a record: each wait is a check that found the query running. */
    const waits = {
      pollIntervalMs: 50,
      sleep: async (ms: number) => {
        sleeps.push(ms);
        await new Promise((resolve) => setTimeout(resolve, ms));
      },
    };

    beforeAll(() => {
      pool = new pg.Pool({ connectionString: db.url, application_name: 'cut-off client', max: 10 });
      cutOffClient = new CutOffSqlClient(pool, CUT_OFF_MS);
    });

    // Released after each test even when it failed half-way, so that nothing waits on it forever.
    const locks: { release: () => Promise<unknown> }[] = [];
    afterEach(async () => {
      await Promise.all(locks.splice(0).map((lock) => lock.release()));
    });

    afterAll(async () => {
      await cutOffClient?.settle();
      await pool?.end();
    });

    /** A loaded staging table, locked so that the figures query waits past its cut-off. */
    async function lockedStaging() {
      const transfer = newTransfer();
      await load(transfer, await unload(transfer, rows));
      const lock = await holdLock(db, quoteQualified(transfer.staging), 'ACCESS EXCLUSIVE');
      locks.push(lock);
      sleeps.length = 0;
      cutOffClient.cutOffs.length = 0;
      return { transfer, lock };
    }

    async function storedFigures() {
      const { rows: stored } = await admin.query(
        'SELECT staging_table FROM redshift_sync.staging_figures',
      );
      return stored;
    }

    it('follows a cut-off figures query and reads the same figures as one plain query', async () => {
      const { transfer, lock } = await lockedStaging();
      const computing = stagingFigures(cutOffClient, transfer, waits);
      await until(() => sleeps.length > 0, 'the cut-off figures query is followed');
      await lock.release();
      const figures = await computing;

      const [plainRow] = await sql.query(
        buildFiguresQuery(quoteQualified(transfer.staging), columns),
      );
      expect(figures).toEqual(parseFigures(plainRow!, columns));
      expect(figures.rows).toBe(30);
      expect(cutOffClient.cutOffs).toEqual([
        {
          sql: expect.stringMatching(
            /^\/\* redshift-aurora-sync figures redshift_sync_staging\.readings__run\d+ [0-9a-f-]{36} \*\/ INSERT INTO redshift_sync\.staging_figures /,
          ),
          longRunning: true,
        },
      ]);
      expect(await storedFigures()).toEqual([]);
    });

    it('names a figures query that was cancelled in the database after its cut-off', async () => {
      const { transfer, lock } = await lockedStaging();
      const computing = stagingFigures(cutOffClient, transfer, waits).catch((e: unknown) => e);
      await until(() => sleeps.length > 0, 'the cut-off figures query is followed');
      const { rows: running } = await admin.query<{ pid: number }>(
        `SELECT pid FROM pg_stat_activity
         WHERE state = 'active' AND query LIKE '/* redshift-aurora-sync figures %' AND pid <> pg_backend_pid()`,
      );
      expect(running).toHaveLength(1);
      await admin.query('SELECT pg_cancel_backend($1)', [running[0]!.pid]);
      const error = await computing;
      await lock.release();

      expect(error).toBeInstanceOf(FiguresQueryStoppedError);
      expect(error).toMatchObject({ name: 'FiguresQueryStoppedError', staging: transfer.staging });
      expect((error as Error).message).toMatch(
        /^redshift_sync_staging\.readings__run\d+: the figures query stopped before it finished\. .*cut off.*without storing the figures: it failed or was cancelled.*restart the run\.$/,
      );
      expect(await storedFigures()).toEqual([]);
    });

    it('passes the gate with the same result as without a cut-off', async () => {
      const source = await sourceFigures();
      const plain = newTransfer();
      await load(plain, await unload(plain, rows));
      const expected = await checkAndPrepareStaging(sql, plain, source);
      const { transfer, lock } = await lockedStaging();
      const checking = checkAndPrepareStaging(cutOffClient, transfer, source, waits);
      await until(() => sleeps.length > 0, 'the cut-off figures query is followed');
      await lock.release();
      const checked = await checking;

      expect(cutOffClient.cutOffs).toHaveLength(1);
      expect(checked).toEqual({
        ...expected,
        indexStatements: expected.indexStatements.map((statement) =>
          statement.replaceAll(plain.staging.name, transfer.staging.name),
        ),
      });
    });

    it("stops at the check's budget, naming the running query, and a later check still passes", async () => {
      const source = await sourceFigures();
      const { transfer, lock } = await lockedStaging();
      const startedAt = Date.now();
      const error = await checkAndPrepareStaging(cutOffClient, transfer, source, {
        ...waits,
        budgetMs: 600,
      }).catch((e: unknown) => e);
      const tookMs = Date.now() - startedAt;
      await lock.release();
      await cutOffClient.settle();

      expect(error).toBeInstanceOf(LongStatementStillRunningError);
      expect(tookMs).toBeGreaterThanOrEqual(600);
      expect((error as Error).message).toMatch(
        /^redshift_sync_staging\.readings__run\d+: the figures query is still running in the database at the end of the staging check's bounded wait \(maxWaitMs, 0\.6 s\): pid \d+ \(for \d+ s, waiting for a lock\): \/\* redshift-aurora-sync figures /,
      );
      // The abandoned query finished once the lock was gone and left its row; the next check
      // replaces it with its own.
      expect(await storedFigures()).toEqual([{ staging_table: transfer.staging.name }]);
      expect((await checkAndPrepareStaging(sql, transfer, source)).rows).toBe(30);
      expect(await storedFigures()).toEqual([]);
    });
  });
});
