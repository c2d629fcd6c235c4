/**
 * "Load each table": create its staging table, import each of its files with aws_s3 (one
 * Data API call per file, checked against the manifest's record count), then hold staging to
 * the source's figures and build the live table's indexes on it.
 */
import { displayQualified } from '../../core/identifiers';
import { importFile } from '../../core/load/import';
import { checkAndPrepareStaging } from '../../core/load/quality-gate';
import { createStagingTable } from '../../core/load/staging';
import type { DataFile } from '../../core/transfer/types';
import type { PipelineDeps } from '../deps';
import { loadRun, transferFor } from '../run-context';
import { expectObject, expectRun, type ImportedFileState, type LoadedTableState } from '../state';

/**
 * How long "Check the staging table against Redshift" may spend: its Lambda times out at 15
 * minutes, and index builds that outlast the Data API's 45 s are followed until this is spent.
 */
export const CHECK_STAGING_BUDGET_MS = 13 * 60_000;

function tableItem(state: unknown): { target: string; files: DataFile[] } {
  const table = expectObject(expectObject(state, 'the step input').table, '$.table');
  return { target: String(table.target), files: (table.files ?? []) as DataFile[] };
}

export async function createStaging(state: unknown, deps: PipelineDeps): Promise<void> {
  const context = await loadRun(deps, expectRun(state));
  const transfer = transferFor(await context.files.readUnload(), tableItem(state).target);
  await createStagingTable(deps.aurora, transfer);
  deps.log.info('staging table created', {
    table: displayQualified(transfer.table.target),
    staging: displayQualified(transfer.staging),
  });
}

export async function importOneFile(
  state: unknown,
  deps: PipelineDeps,
): Promise<ImportedFileState> {
  const input = expectObject(state, 'the step input');
  const context = await loadRun(deps, expectRun(state));
  const transfer = transferFor(await context.files.readUnload(), String(input.target));
  const file = expectObject(input.file, '$.file') as unknown as DataFile;
  const imported = await importFile(deps.aurora, {
    staging: transfer.staging,
    columns: transfer.columns.map((column) => column.name),
    file,
    region: deps.settings.region,
  });
  deps.metrics.record('RowsImported', 'Count', imported.rows);
  return { key: imported.key, rows: imported.rows };
}

export async function checkStaging(state: unknown, deps: PipelineDeps): Promise<LoadedTableState> {
  const context = await loadRun(deps, expectRun(state));
  const { target } = tableItem(state);
  const transfer = transferFor(await context.files.readUnload(), target);
  const source = await context.files.readFigures(transfer.table.target);
  const checked = await checkAndPrepareStaging(deps.aurora, transfer, source, {
    budgetMs: CHECK_STAGING_BUDGET_MS,
    now: deps.now,
    sleep: deps.sleep,
  });
  deps.log.info('staging table passed the quality gate', {
    table: target,
    rows: checked.rows,
    indexesBuilt: checked.indexStatements.length,
  });
  return {
    target,
    rows: checked.rows,
    sourceRows: source.rows,
    indexesBuilt: checked.indexStatements.length,
  };
}
