/**
 * "Unload the tables from Redshift" and "Check whether the unload finished": every table of
 * the run goes out in ONE Redshift transaction, each followed by its figures query, so data
 * and figures describe one snapshot.
 */
import { SyncError } from '../../core/errors';
import { displayQualified } from '../../core/identifiers';
import { targetColumns } from '../../core/load/target';
import { STAGING_SCHEMA } from '../../core/schema/admin';
import { runScopedName } from '../../core/swap/plan';
import { parseFigures } from '../../core/transfer/figures';
import type { TableTransfer } from '../../core/transfer/types';
import { parseSourceColumns, SOURCE_COLUMNS_SQL } from '../../core/unload/columns';
import { parseManifest } from '../../core/unload/manifest';
import { planColumns } from '../../core/unload/select-list';
import {
  buildUnloadBatch,
  manifestKey,
  parseS3Prefix,
  tableS3Prefix,
} from '../../core/unload/statement';
import { waitForStatement } from '../../core/unload/wait';
import type { PipelineDeps } from '../deps';
import { loadRun } from '../run-context';
import { expectObject, expectRun, type UnloadState } from '../state';

/** Redshift refused or aborted the unload; Aurora was not touched. */
export class UnloadFailedError extends SyncError {}

/** How long column discovery may take before the step gives up (Redshift queues queries). */
const DISCOVERY_TIMEOUT_MS = 40_000;

export async function startUnload(state: unknown, deps: PipelineDeps): Promise<UnloadState> {
  const context = await loadRun(deps, expectRun(state));
  const { runId } = context.run;
  // Discover every source table's columns at once: one submitted query per table, then poll.
  const submitted = await Promise.all(
    context.tables.map((table) =>
      deps.warehouse.submitStatement(
        SOURCE_COLUMNS_SQL,
        { schema: table.source.schema, table: table.source.name },
        `columns of ${displayQualified(table.source)}`.slice(0, 500),
      ),
    ),
  );
  const transfers: TableTransfer[] = [];
  const unsyncedColumns: string[][] = [];
  for (const [index, table] of context.tables.entries()) {
    const statementId = submitted[index]!;
    await waitForStatement(deps.warehouse, statementId, {
      sleep: deps.sleep,
      timeoutMs: DISCOVERY_TIMEOUT_MS,
      pollMs: 250,
    });
    const source = parseSourceColumns(await deps.warehouse.fetchRows(statementId), table.source);
    const target = await targetColumns(deps.aurora, table.target);
    const planned = planColumns(table, source, target);
    transfers.push({
      table,
      staging: { schema: STAGING_SCHEMA, name: runScopedName(runId, table.target) },
      columns: planned.columns,
      s3Prefix: tableS3Prefix(deps.settings.bucket, runId, table.target),
    });
    unsyncedColumns.push([...planned.unsynced]);
    if (planned.unsynced.length > 0) {
      deps.log.warn('source columns the live table does not have are not synced', {
        table: displayQualified(table.target),
        columns: planned.unsynced,
      });
    }
  }
  const batch = buildUnloadBatch(transfers, {
    iamRoleArn: deps.settings.unloadRoleArn,
    ...(deps.settings.kmsKeyArn ? { kmsKeyArn: deps.settings.kmsKeyArn } : {}),
    region: deps.settings.region,
    maxFileSizeMb: context.config.unload.maxFileSizeMb,
  });
  // UNLOAD refuses a folder that already holds files: clear what an earlier attempt of this
  // step (a retried Lambda) may have written.
  for (const transfer of transfers) {
    const { bucket, keyPrefix } = parseS3Prefix(transfer.s3Prefix);
    await deps.objects.deletePrefix(bucket, keyPrefix);
  }
  const statementId = await deps.warehouse.submitBatch(
    batch.statements,
    `redshift-aurora-sync ${runId}`.slice(0, 500),
  );
  await context.files.writeUnload({
    statementId,
    submittedAt: new Date(deps.now()).toISOString(),
    transfers,
    figuresStatementIndex: batch.figuresStatementIndex,
    unsyncedColumns,
  });
  deps.log.info('unload submitted', { runId, statementId, tables: transfers.length });
  return { finished: false, statementId, status: 'SUBMITTED' };
}

export async function checkUnload(state: unknown, deps: PipelineDeps): Promise<UnloadState> {
  const run = expectRun(state);
  const unload = expectObject(expectObject(state, 'the step input').unload, '$.unload');
  const statementId = String(unload.statementId);
  const status = await deps.warehouse.describe(statementId);
  if (status.state === 'running') return { finished: false, statementId, status: status.status };
  if (status.state === 'failed') {
    throw new UnloadFailedError(
      `Redshift did not unload the tables (statement ${statementId}, ${status.status}): ${status.error}`,
    );
  }
  const context = await loadRun(deps, run);
  const record = await context.files.readUnload();
  const tables = [];
  for (const [index, transfer] of record.transfers.entries()) {
    const rows = await deps.warehouse.fetchRows(statementId, record.figuresStatementIndex[index]);
    if (rows.length !== 1) {
      throw new UnloadFailedError(
        `the figures query of ${displayQualified(transfer.table.source)} returned ${rows.length} rows, not 1.`,
      );
    }
    const figures = parseFigures(rows[0]!, transfer.columns);
    await context.files.writeFigures(transfer.table.target, figures);
    const { bucket, keyPrefix } = parseS3Prefix(transfer.s3Prefix);
    const key = manifestKey(keyPrefix);
    const files = parseManifest(
      await deps.objects.getText(bucket, key),
      `the manifest of ${displayQualified(transfer.table.source)} (s3://${bucket}/${key})`,
    );
    const manifestRows = files.reduce((sum, file) => sum + file.records, 0);
    if (manifestRows !== figures.rows) {
      throw new UnloadFailedError(
        `${displayQualified(transfer.table.source)}: the manifest lists ${manifestRows} rows but the same snapshot counted ${figures.rows}; the unload is incomplete. Run again.`,
      );
    }
    deps.metrics.record('RowsUnloaded', 'Count', figures.rows);
    tables.push({ target: displayQualified(transfer.table.target), files });
  }
  deps.log.info('unload finished', {
    runId: run.runId,
    tables: tables.map((table) => ({ target: table.target, files: table.files.length })),
  });
  return { finished: true, statementId, status: status.status, tables };
}
