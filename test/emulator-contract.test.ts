/**
 * The file-format contract end to end, through the emulators: the UNLOAD batch the Redshift
 * side builds (lambdas/core/unload), run by the local warehouse, its manifest read back, each
 * file imported the way the Aurora side imports it (lambdas/core/load/import.ts) through the
 * aws_s3 shim, and every value compared with the source.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { quoteIdentifier, quoteQualified } from '../lambdas/core/identifiers';
import { importFile } from '../lambdas/core/load/import';
import { buildFiguresQuery, parseFigures } from '../lambdas/core/transfer/figures';
import type { StatementState } from '../lambdas/core/transfer/ports';
import type { SyncTable, TableTransfer } from '../lambdas/core/transfer/types';
import {
  parseSourceColumns,
  SOURCE_COLUMNS_SQL,
  sourceColumnsParameters,
} from '../lambdas/core/unload/columns';
import { parseManifest } from '../lambdas/core/unload/manifest';
import { planColumns } from '../lambdas/core/unload/select-list';
import { buildUnloadSession, parseS3Prefix, tableS3Prefix } from '../lambdas/core/unload/statement';
import { installAwsS3Shim } from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { LocalWarehouse } from '../local/emulators/local-warehouse';
import { freshDatabase } from './support/db';

const BUCKET = 'contract-bucket';
const SOURCE = { schema: 'Sales Dept', name: `Order "Items" 'x' \\ y` };
const TARGET = { schema: 'public', name: 'order_items' };
const STAGING = { schema: 'staging', name: 'order_items_run_1' };

let s3Dir: string;
let admin: pg.Client;
let warehouse: LocalWarehouse;

async function settle(id: string): Promise<StatementState> {
  for (let attempt = 0; attempt < 1000; attempt += 1) {
    const state = await warehouse.describe(id);
    if (state.state !== 'running') return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`statement ${id} did not finish`);
}

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'emulator-contract-'));
  await chmod(s3Dir, 0o755);
  const db = await freshDatabase();
  admin = await db.connect('contract-admin');
  await admin.query(`CREATE SCHEMA ${quoteIdentifier(SOURCE.schema)}`);
  await admin.query(
    `CREATE TABLE ${quoteQualified(SOURCE)} ("Id" integer, "Note | text" varchar(300), "Big Number" numeric(20,4),
       ratio double precision, done boolean, at timestamptz, doc jsonb, blob bytea, share real)`,
  );
  await admin.query(
    `INSERT INTO ${quoteQualified(SOURCE)} VALUES
       (1, E'line\\nbreak | pipe \\\\ back', 12345678901234.5678, 0.1, true, '2024-01-01 10:00+05', '{"k": "v\\\\n"}', '\\x00ff', 1000.00006),
       (2, '', -0.0001, '1e-300', false, NULL, 'null', '\\x', 0.1),
       (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
       (4, '\\N', 0, 'Infinity', true, '1970-01-01 00:00:00+00', '[1, "two", {"3": null}]', '\\x5c', 3.4028235e38)`,
  );
  await admin.query(`CREATE SCHEMA ${quoteIdentifier(STAGING.schema)}`);
  await installAwsS3Shim(admin, { s3Dir });
  warehouse = new LocalWarehouse({ sourceUrl: db.url, s3Dir });
});

afterAll(async () => {
  await warehouse.close();
  await rm(s3Dir, { recursive: true, force: true });
});

describe('the UNLOAD contract through the emulators', () => {
  it('discovers, unloads, imports and gets every value back', async () => {
    const discovery = await warehouse.submitStatement(
      SOURCE_COLUMNS_SQL,
      sourceColumnsParameters(SOURCE),
      'columns',
    );
    expect(await settle(discovery)).toEqual({ state: 'done', status: 'FINISHED' });
    const sourceColumns = parseSourceColumns(await warehouse.fetchRows(discovery), SOURCE);
    const table: SyncTable = {
      source: SOURCE,
      target: TARGET,
      strategy: 'rename',
      allowEmpty: false,
    };
    const { columns } = planColumns(table, sourceColumns, null);
    const transfer: TableTransfer = {
      table,
      staging: STAGING,
      columns,
      s3Prefix: tableS3Prefix(BUCKET, 'run-1', TARGET),
    };
    const plan = buildUnloadSession([transfer], {
      iamRoleArn: 'arn:aws:iam::123456789012:role/unload',
      maxFileSizeMb: 5,
    });
    // As the pipeline sends them: the calls in order on one session (the oversize counts, then
    // the UNLOAD and figures call).
    const calls: string[] = [];
    let sessionId: string | undefined;
    for (const statements of plan.batches) {
      const submitted = await warehouse.submitInSession(
        statements,
        'unload',
        sessionId ? { sessionId } : { keepAliveSeconds: 60 },
      );
      sessionId = submitted.sessionId;
      calls.push(submitted.statementId);
      expect(await settle(submitted.statementId)).toEqual({ state: 'done', status: 'FINISHED' });
    }
    const unload = calls[plan.figures[0]!.batch]!;
    const figuredColumns = columns.map((column) => ({
      name: column.name,
      figures: column.figures,
    }));
    const [figuresRow] = await warehouse.fetchRows(unload, plan.figures[0]!.index);
    const sourceFigures = parseFigures(figuresRow!, figuredColumns);
    expect(sourceFigures.rows).toBe(4);

    const { bucket, keyPrefix } = parseS3Prefix(transfer.s3Prefix);
    const manifestText = await new LocalObjectStore(s3Dir).getText(bucket, `${keyPrefix}manifest`);
    const files = parseManifest(manifestText, `s3://${bucket}/${keyPrefix}manifest`);
    expect(files.reduce((sum, file) => sum + file.records, 0)).toBe(4);

    const definition = columns
      .map((column) => `${quoteIdentifier(column.name)} ${column.targetType}`)
      .join(', ');
    await admin.query(`CREATE TABLE ${quoteQualified(STAGING)} (${definition})`);
    const aurora = new PgSqlClient(admin);
    for (const file of files) {
      const imported = await importFile(aurora, {
        staging: STAGING,
        columns: columns.map((column) => column.name),
        file,
        region: 'eu-west-1',
      });
      expect(imported.rows).toBe(file.records);
    }

    const [stagingRow] = await aurora.query(
      buildFiguresQuery(quoteQualified(STAGING), figuredColumns),
    );
    expect(parseFigures(stagingRow!, figuredColumns)).toEqual(sourceFigures);
    const mismatches = columns
      .map((column) => {
        const name = quoteIdentifier(column.name);
        return `count(*) FILTER (WHERE s.${name} IS DISTINCT FROM d.${name})::int AS ${name}`;
      })
      .join(', ');
    const { rows } = await admin.query(
      `SELECT count(*)::int AS matched, ${mismatches}
         FROM ${quoteQualified(SOURCE)} AS s JOIN ${quoteQualified(STAGING)} AS d USING ("Id")`,
    );
    expect(rows).toEqual([
      { matched: 4, ...Object.fromEntries(columns.map((column) => [column.name, 0])) },
    ]);
  });
});
