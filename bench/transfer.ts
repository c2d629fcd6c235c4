/**
 * Benchmark of the data path: rows per second from a source table into an Aurora staging
 * table through the product's path (the UNLOAD batch on the local warehouse, its files, the
 * `aws_s3` import through the shim, the quality gate's figures), next to a hand-made pipe
 * (`COPY (SELECT ...) TO STDOUT` from the source streamed into `COPY ... FROM STDIN` on the
 * target), measured in the same run on the same server. Starts one embedded PostgreSQL with a
 * source and a target database; prints numbers.
 *
 *   npm run bench:transfer                          # defaults: 1,000,000 rows, 3 runs each
 *   npm run bench:transfer -- --rows 100000 --runs 1 # a quick check
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteIdentifier, quoteQualified } from '../lambdas/core/identifiers';
import { importFilesFrom } from '../lambdas/core/load/import';
import { qualityGate, stagingFigures } from '../lambdas/core/load/quality-gate';
import { createStagingTable, dropStaging } from '../lambdas/core/load/staging';
import { targetColumns } from '../lambdas/core/load/target';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import { parseFigures } from '../lambdas/core/transfer/figures';
import type { StatementState, Warehouse } from '../lambdas/core/transfer/ports';
import type { SyncTable, TableFigures, TableTransfer } from '../lambdas/core/transfer/types';
import {
  parseSourceColumns,
  SOURCE_COLUMNS_SQL,
  sourceColumnsParameters,
} from '../lambdas/core/unload/columns';
import { parseManifest } from '../lambdas/core/unload/manifest';
import { planColumns } from '../lambdas/core/unload/select-list';
import {
  buildUnloadSession,
  DEFAULT_MAX_FILE_SIZE_MB,
  manifestKey,
  parseS3Prefix,
  tableS3Prefix,
} from '../lambdas/core/unload/statement';
import { FILE_CONCURRENCY } from '../lambdas/pipeline/steps/load';
import { installAwsS3Shim } from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { LocalWarehouse } from '../local/emulators/local-warehouse';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import {
  connect,
  fmt,
  log,
  machineDescription,
  markdownTable,
  median,
  parseWholeNumberFlags,
  textTable,
} from './common';

const BUCKET = 'bench-bucket';
const REGION = 'eu-west-1';
const IAM_ROLE_ARN = 'arn:aws:iam::123456789012:role/bench-unload';
const SOURCE: QualifiedName = { schema: 'sales', name: 'orders' };
const TARGET: QualifiedName = { schema: 'public', name: 'orders' };
/** LocalWarehouse's default: UNLOAD writes at least one file per slice. */
const SLICES = 2;
/** How often the benchmark asks the local warehouse whether the batch is done. */
const POLL_MS = 10;
const MIB = 2 ** 20;

/**
 * A source table with the column mix of a typical fact table. Values are derived from the row
 * number, not random, so every run moves the same bytes. The note column holds what the text
 * format has to escape (the `|` delimiter, backslashes, LF, CR, tab, a literal `\N`), empty
 * strings, NULLs and multi-byte characters.
 */
async function createSourceTable(source: pg.Client, rows: number): Promise<void> {
  const table = quoteQualified(SOURCE);
  await source.query(`CREATE SCHEMA ${quoteIdentifier(SOURCE.schema)}`);
  await source.query(
    `CREATE TABLE ${table} (
       id bigint NOT NULL,
       quantity integer,
       amount numeric(12,2),
       note varchar(200),
       created_at timestamptz NOT NULL,
       shipped boolean)`,
  );
  await source.query({
    text: `INSERT INTO ${table}
      SELECT g,
             CASE WHEN g % 97 = 0 THEN NULL ELSE (g * 7919) % 100000 - 50000 END,
             CASE WHEN g % 89 = 0 THEN NULL ELSE ((g * 104729) % 100000000 - 50000000) / 100.0 END,
             CASE g % 20
               WHEN 0 THEN NULL
               WHEN 1 THEN ''
               WHEN 2 THEN E'pipe | and back\\\\slash ' || g
               WHEN 3 THEN E'two\\nlines\\r\\tand a tab ' || g
               WHEN 4 THEN 'ünïcødé 日本語 ' || g
               WHEN 5 THEN E'\\\\N'
               ELSE 'order ' || g || ' ' || md5(g::text)
             END,
             timestamptz '2024-01-01 00:00:00+00' + g * interval '31 seconds'
               + (g % 1000000) * interval '1 microsecond',
             CASE WHEN g % 53 = 0 THEN NULL ELSE g % 3 <> 0 END
        FROM generate_series(1, $1::bigint) AS g`,
    values: [rows],
  });
  await source.query(`VACUUM ANALYZE ${table}`);
}

async function settle(warehouse: Warehouse, id: string): Promise<StatementState> {
  for (;;) {
    const state = await warehouse.describe(id);
    if (state.state !== 'running') return state;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

interface ProductRun {
  readonly unloadSeconds: number;
  readonly importSeconds: number;
  readonly gateSeconds: number;
  readonly files: number;
  readonly bytes: number;
  readonly sourceFigures: TableFigures;
}

interface PipeRun {
  readonly seconds: number;
  readonly bytes: number;
}

interface Setup {
  readonly rows: number;
  readonly table: SyncTable;
  readonly transfer: Omit<TableTransfer, 'staging' | 's3Prefix'>;
  readonly warehouse: LocalWarehouse;
  readonly bucket: LocalObjectStore;
  readonly target: PgSqlClient;
  /** Sessions for the parallel imports, as the Data API would serve concurrent calls. */
  readonly importPool: PgSqlClient;
  readonly sourceUrl: string;
  readonly targetUrl: string;
}

/** UNLOAD + source figures in one batch, the manifest, the import, the gate's figures. */
async function productRun(setup: Setup, run: number): Promise<ProductRun> {
  const runId = `bench-${run}`;
  const transfer: TableTransfer = {
    ...setup.transfer,
    staging: { schema: STAGING_SCHEMA, name: `orders_product_${run}` },
    s3Prefix: tableS3Prefix(BUCKET, runId, TARGET),
  };
  await createStagingTable(setup.target, transfer);
  const plan = buildUnloadSession([transfer], {
    iamRoleArn: IAM_ROLE_ARN,
    maxFileSizeMb: DEFAULT_MAX_FILE_SIZE_MB,
  });

  // As the pipeline sends them: every call of the plan in order, on one session.
  const unloadStarted = performance.now();
  const callIds: string[] = [];
  let sessionId: string | undefined;
  for (const [index, statements] of plan.batches.entries()) {
    const submitted = await setup.warehouse.submitInSession(
      statements,
      `${runId} unload ${index + 1}/${plan.batches.length}`,
      sessionId ? { sessionId } : { keepAliveSeconds: 600 },
    );
    sessionId = submitted.sessionId;
    callIds.push(submitted.statementId);
    const state = await settle(setup.warehouse, submitted.statementId);
    if (state.state === 'failed') throw new Error(`the unload call failed: ${state.error}`);
  }
  const at = plan.figures[0]!;
  const [figuresRow] = await setup.warehouse.fetchRows(callIds[at.batch]!, at.index);
  const sourceFigures = parseFigures(figuresRow!, transfer.columns);
  const { bucket, keyPrefix } = parseS3Prefix(transfer.s3Prefix);
  const manifest = manifestKey(keyPrefix);
  const files = parseManifest(
    await setup.bucket.getText(bucket, manifest),
    `s3://${bucket}/${manifest}`,
  );
  const unloadSeconds = (performance.now() - unloadStarted) / 1000;

  const importStarted = performance.now();
  // As "Import files into staging" does, at its concurrency.
  const columns = transfer.columns.map((column) => column.name);
  let importedBytes = 0;
  await importFilesFrom(
    setup.importPool,
    files.map((file) => ({ file, staging: transfer.staging, columns })),
    {
      region: REGION,
      concurrency: FILE_CONCURRENCY,
      onImported: (_item, imported) => {
        importedBytes += imported.bytes;
      },
    },
  );
  const importSeconds = (performance.now() - importStarted) / 1000;

  const gateStarted = performance.now();
  const verdict = qualityGate({
    table: setup.table,
    source: sourceFigures,
    staging: await stagingFigures(setup.target, transfer),
    liveRows: null,
  });
  const gateSeconds = (performance.now() - gateStarted) / 1000;
  if (!verdict.passed) throw new Error(`the quality gate failed:\n${verdict.report}`);
  if (sourceFigures.rows !== setup.rows) {
    throw new Error(`the unload saw ${sourceFigures.rows} rows, not ${setup.rows}`);
  }

  await setup.bucket.deletePrefix(bucket, keyPrefix);
  await dropStaging(setup.target, transfer.staging);
  return {
    unloadSeconds,
    importSeconds,
    gateSeconds,
    files: files.length,
    bytes: importedBytes,
    sourceFigures,
  };
}

/**
 * The hand-made pipe: one session on each database, the source's COPY output streamed into
 * the target's COPY input, both in PostgreSQL's text format. Its staging table is made the
 * way the product makes one, and held to the same figures afterwards (not timed), so both
 * paths are known to have moved the same data.
 */
async function pipeRun(setup: Setup, run: number, sourceFigures: TableFigures): Promise<PipeRun> {
  const transfer: TableTransfer = {
    ...setup.transfer,
    staging: { schema: STAGING_SCHEMA, name: `orders_pipe_${run}` },
    s3Prefix: tableS3Prefix(BUCKET, `bench-pipe-${run}`, TARGET),
  };
  await createStagingTable(setup.target, transfer);
  const columns = transfer.columns.map((column) => quoteIdentifier(column.name)).join(', ');
  const reader = await connect(setup.sourceUrl, 'bench-pipe-reader');
  const writer = await connect(setup.targetUrl, 'bench-pipe-writer');
  let seconds: number;
  let bytes = 0;
  try {
    const started = performance.now();
    const out = reader.query(
      copyStreams.to(`COPY (SELECT ${columns} FROM ${quoteQualified(SOURCE)}) TO STDOUT`),
    );
    const into = writer.query(
      copyStreams.from(`COPY ${quoteQualified(transfer.staging)} (${columns}) FROM STDIN`),
    );
    out.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    await pipeline(out, into);
    seconds = (performance.now() - started) / 1000;
    if (into.rowCount !== setup.rows) {
      throw new Error(`the pipe loaded ${into.rowCount} rows, not ${setup.rows}`);
    }
  } finally {
    await reader.end();
    await writer.end();
  }
  const verdict = qualityGate({
    table: setup.table,
    source: sourceFigures,
    staging: await stagingFigures(setup.target, transfer),
    liveRows: null,
  });
  if (!verdict.passed) throw new Error(`the pipe's staging fails the gate:\n${verdict.report}`);
  await dropStaging(setup.target, transfer.staging);
  return { seconds, bytes };
}

const rate = (rows: number, seconds: number) => Math.round(rows / seconds).toLocaleString('en-US');

async function main(): Promise<void> {
  const { rows, runs } = parseWholeNumberFlags(
    process.argv.slice(2),
    { rows: { default: 1_000_000, least: 1000 }, runs: { default: 3, least: 1 } },
    'usage: tsx bench/transfer.ts [--rows N] [--runs N]  (default 1000000 rows, 3 runs)',
  );
  const benchStarted = performance.now();
  const rowsText = rows.toLocaleString('en-US');
  console.log(
    `transfer benchmark: ${rowsText} rows, ${runs} run(s) of each path, interleaved; UNLOAD on ${SLICES} slices, MAXFILESIZE ${DEFAULT_MAX_FILE_SIZE_MB} MB, import concurrency ${FILE_CONCURRENCY}`,
  );
  let server: LocalPostgres | undefined;
  let s3Dir: string | undefined;
  const sessions: { end(): Promise<void> }[] = [];
  let warehouse: LocalWarehouse | undefined;
  // Ctrl-C: stop the server before leaving.
  process.once('SIGINT', () => {
    void (server?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  });
  try {
    log('starting embedded PostgreSQL');
    server = await startLocalPostgres();
    const sourceUrl = await server.createDatabase('bench_source');
    const targetUrl = await server.createDatabase('bench_target');
    s3Dir = await mkdtemp(join(tmpdir(), 'bench-transfer-s3-'));
    // The server's own user reads the files the import COPYs.
    await chmod(s3Dir, 0o755);

    const sourceAdmin = await connect(sourceUrl, 'bench-source-admin');
    sessions.push(sourceAdmin);
    log(`creating the source table: ${rowsText} rows`);
    await createSourceTable(sourceAdmin, rows);
    const {
      rows: [facts],
    } = await sourceAdmin.query<{ size: string; version: string }>(
      'SELECT pg_size_pretty(pg_total_relation_size($1::regclass)) AS size, version() AS version',
      [quoteQualified(SOURCE)],
    );

    const targetAdmin = await connect(targetUrl, 'bench-target-admin');
    sessions.push(targetAdmin);
    const target = new PgSqlClient(targetAdmin);
    await installSchema(target);
    await installAwsS3Shim(targetAdmin, { s3Dir });
    const pool = new pg.Pool({
      connectionString: targetUrl,
      application_name: 'bench-import',
      max: FILE_CONCURRENCY,
      idleTimeoutMillis: 0,
    });
    pool.on('error', () => {});
    sessions.push(pool);

    warehouse = new LocalWarehouse({ sourceUrl, s3Dir, slices: SLICES });
    const discovery = await warehouse.submitStatement(
      SOURCE_COLUMNS_SQL,
      sourceColumnsParameters(SOURCE),
      'columns',
    );
    const discovered = await settle(warehouse, discovery);
    if (discovered.state === 'failed') throw new Error(`column discovery: ${discovered.error}`);
    const table: SyncTable = {
      source: SOURCE,
      target: TARGET,
      strategy: 'rename',
      allowEmpty: false,
    };
    // No live table: a first run, its staging built from the type map.
    const { columns } = planColumns(
      table,
      parseSourceColumns(await warehouse.fetchRows(discovery), SOURCE),
      await targetColumns(target, TARGET),
    );
    const setup: Setup = {
      rows,
      table,
      transfer: { table, columns },
      warehouse,
      bucket: new LocalObjectStore(s3Dir),
      target,
      importPool: new PgSqlClient(pool),
      sourceUrl,
      targetUrl,
    };

    const product: ProductRun[] = [];
    const pipe: PipeRun[] = [];
    for (let run = 1; run <= runs; run++) {
      // Dirty pages of the previous measurement are written out before the next one starts.
      await targetAdmin.query('CHECKPOINT');
      log(`run ${run}/${runs}: product path (UNLOAD, import, gate)`);
      product.push(await productRun(setup, run));
      await targetAdmin.query('CHECKPOINT');
      log(`run ${run}/${runs}: hand-made COPY pipe`);
      pipe.push(await pipeRun(setup, run, product.at(-1)!.sourceFigures));
    }

    const totals = product.map((p) => p.unloadSeconds + p.importSeconds + p.gateSeconds);
    const movedSeconds = product.map((p) => p.unloadSeconds + p.importSeconds);
    const runsText = (values: readonly number[]) => values.map((v) => fmt(v, 2)).join(' / ');
    const headers = ['path', 'seconds (median)', 'rows/s', 'files', 'MiB', 'seconds per run'];
    const line = (name: string, seconds: readonly number[], files: string, bytes: string) => [
      name,
      fmt(median(seconds), 2),
      rate(rows, median(seconds)),
      files,
      bytes,
      runsText(seconds),
    ];
    const fileBytes = fmt(median(product.map((p) => p.bytes)) / MIB);
    const fileCount = String(median(product.map((p) => p.files)));
    const tableRows = [
      line(
        'product: unload (UNLOAD + source figures, manifest read)',
        product.map((p) => p.unloadSeconds),
        fileCount,
        fileBytes,
      ),
      line(
        'product: import (aws_s3 shim, one call per file)',
        product.map((p) => p.importSeconds),
        fileCount,
        fileBytes,
      ),
      line(
        'product: quality gate (staging figures + verdict)',
        product.map((p) => p.gateSeconds),
        '–',
        '–',
      ),
      line('product: unload + import', movedSeconds, fileCount, fileBytes),
      line('product: total (unload + import + gate)', totals, fileCount, fileBytes),
      line(
        'hand-made pipe: COPY TO STDOUT | COPY FROM STDIN',
        pipe.map((p) => p.seconds),
        '–',
        fmt(median(pipe.map((p) => p.bytes)) / MIB),
      ),
    ];
    const pipeSeconds = median(pipe.map((p) => p.seconds));
    const machine = machineDescription();
    const postgres = facts!.version;
    const caption = `${rowsText} rows (bigint, integer, numeric(12,2), varchar(200) with NULLs, empty strings and escaped characters, timestamptz, boolean; ${facts!.size} on disk), source and target databases on one embedded PostgreSQL; UNLOAD on ${SLICES} slices with MAXFILESIZE ${DEFAULT_MAX_FILE_SIZE_MB} MB, import concurrency ${FILE_CONCURRENCY}; median of ${runs} interleaved run(s), each row of the table its own median.`;
    const ratios = `The pipe takes ${fmt((pipeSeconds / median(movedSeconds)) * 100, 0)} % of the product's unload + import time and ${fmt((pipeSeconds / median(totals)) * 100, 0)} % of its total. Ratio, product / pipe: total ${fmt(median(totals) / pipeSeconds, 2)}x, unload + import ${fmt(median(movedSeconds) / pipeSeconds, 2)}x.`;

    console.log('');
    console.log(caption);
    console.log(textTable(headers, tableRows));
    console.log(ratios);
    console.log('');
    console.log(`machine:    ${machine}`);
    console.log(`postgres:   ${postgres}`);
    console.log(`total time: ${fmt((performance.now() - benchStarted) / 1000)} s`);
    console.log('');
    console.log('Markdown:');
    console.log('');
    console.log(caption);
    console.log('');
    console.log(markdownTable(headers, tableRows));
    console.log('');
    console.log(ratios);
    console.log('');
    console.log(`Machine: ${machine}. PostgreSQL: ${postgres}.`);
  } finally {
    await warehouse?.close();
    for (const session of sessions.reverse()) await session.end().catch(() => {});
    await server?.stop().catch((error: unknown) => console.error('stopping PostgreSQL:', error));
    if (s3Dir) await rm(s3Dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
