/**
 * "Load each table": create its staging table, import its files with aws_s3 (one Data API
 * call per file, checked against the manifest's record count) in as many calls of the import
 * step as they need, then hold staging to the source's figures and build the live table's
 * indexes on it.
 */
import { displayQualified } from '../../core/identifiers';
import { type FileToImport, importFilesFrom } from '../../core/load/import';
import { analyzeKeyTable, createKeyTable } from '../../core/load/key-table';
import { checkAndPrepareStaging } from '../../core/load/quality-gate';
import { createStagingTable } from '../../core/load/staging';
import type { PipelineDeps } from '../deps';
import { loadRun, transferFor } from '../run-context';
import {
  type ImportedFilesState,
  type LoadedTableState,
  parseStepInput,
  STEP_INPUTS,
} from '../state';

/**
 * How long "Check the staging table against Redshift" may spend: its Lambda times out at 15
 * minutes, and index builds that outlast the Data API's 45 s are followed until this is spent.
 */
export const CHECK_STAGING_BUDGET_MS = 13 * 60_000;

/**
 * How long one "Import files into staging" keeps starting files. A file started before this
 * ends within one Data API call (cut off at 45 s, lambdas/core/load/import.ts), so the
 * function returns within its 300 s timeout (lib/function-access.ts) however many files remain.
 */
export const IMPORT_BUDGET_MS = 200_000;
/** Files imported at once by one "Import files into staging" (one Data API call each). */
export const FILE_CONCURRENCY = 8;

export async function createStaging(state: unknown, deps: PipelineDeps): Promise<void> {
  const { run, table } = parseStepInput(STEP_INPUTS.table, state);
  const context = await loadRun(deps, run);
  const transfer = transferFor(await context.files.readUnload(), table.target);
  await createStagingTable(deps.aurora, transfer);
  await createKeyTable(deps.aurora, transfer);
  deps.log.info('staging table created', {
    table: displayQualified(transfer.table.target),
    staging: displayQualified(transfer.staging),
    ...(transfer.keys ? { keys: displayQualified(transfer.keys.table) } : {}),
  });
}

/**
 * "Import files into staging": imports the table's files from `$.imported.next` on,
 * FILE_CONCURRENCY at a time, until they are all in or IMPORT_BUDGET_MS is spent, and says how
 * many remain; the state machine calls it again while any do. The file list is read from the
 * run's folder, so neither the state nor the execution's history grows with the files.
 */
export async function importFiles(state: unknown, deps: PipelineDeps): Promise<ImportedFilesState> {
  const { run, table, imported } = parseStepInput(STEP_INPUTS.table, state);
  const context = await loadRun(deps, run);
  const { target } = table;
  const transfer = transferFor(await context.files.readUnload(), target);
  // The data files into staging, then a reconcile's key files into its key table.
  const columns = transfer.columns.map((column) => column.name);
  const files: FileToImport[] = (await context.files.readFiles(transfer.table.target)).map(
    (file) => ({ file, staging: transfer.staging, columns }),
  );
  if (transfer.keys) {
    const { table, columns: keyColumns } = transfer.keys;
    for (const file of await context.files.readKeyFiles(transfer.table.target)) {
      files.push({ file, staging: table, columns: keyColumns.map((column) => column.name) });
    }
  }
  const started = deps.now();
  let { rows } = imported;
  const next = await importFilesFrom(deps.aurora, files, {
    region: deps.settings.region,
    concurrency: FILE_CONCURRENCY,
    from: imported.next,
    keepStarting: () => deps.now() - started < IMPORT_BUDGET_MS,
    onImported: (item, result) => {
      // `rows` counts the table's rows; keys are counted apart.
      if (item.staging === transfer.staging) {
        deps.metrics.record('RowsImported', 'Count', result.rows);
        rows += result.rows;
      } else {
        deps.metrics.record('KeysImported', 'Count', result.rows);
      }
    },
  });
  deps.log.info('files imported', { table: target, next, of: files.length, rows });
  return { next, remaining: files.length - next, rows };
}

export async function checkStaging(state: unknown, deps: PipelineDeps): Promise<LoadedTableState> {
  const { run, table } = parseStepInput(STEP_INPUTS.table, state);
  const context = await loadRun(deps, run);
  const { target } = table;
  const transfer = transferFor(await context.files.readUnload(), target);
  const source = await context.files.readFigures(transfer.table.target);
  const checked = await checkAndPrepareStaging(deps.aurora, transfer, source, {
    budgetMs: CHECK_STAGING_BUDGET_MS,
    now: deps.now,
    sleep: deps.sleep,
    // The run's maxWaitSeconds: the configuration's, or the one the execution input asked for.
    locks: { ...context.config.locks, maxWaitSeconds: run.maxWaitSeconds },
  });
  await analyzeKeyTable(deps.aurora, transfer);
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
