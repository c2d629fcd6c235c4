/**
 * "Unload the tables from Redshift" and "Check whether the unload finished": every table of
 * the run goes out in ONE Redshift transaction, each followed by its figures query, so data
 * and figures describe one snapshot. A batch call takes at most 40 statements, so the
 * transaction spans calls on one Redshift Data API session (buildUnloadSession; README, "One
 * snapshot").
 */
import { SyncError } from '../../core/errors';
import { displayQualified } from '../../core/identifiers';
import { deltaFilter } from '../../core/increment/mode';
import { targetColumns } from '../../core/load/target';
import { STAGING_SCHEMA } from '../../core/schema/admin';
import { runScopedName } from '../../core/swap/plan';
import { parseFigures } from '../../core/transfer/figures';
import type { TableFigures, TableTransfer } from '../../core/transfer/types';
import { parseSourceColumns, SOURCE_COLUMNS_SQL } from '../../core/unload/columns';
import { parseManifest } from '../../core/unload/manifest';
import { oversizedValuesError, parseOversized } from '../../core/unload/oversize';
import { planColumns } from '../../core/unload/select-list';
import {
  buildUnloadSession,
  manifestKey,
  parseS3Prefix,
  type SessionStatement,
  tableS3Prefix,
} from '../../core/unload/statement';
import { waitForStatement } from '../../core/unload/wait';
import type { PipelineDeps } from '../deps';
import { type DiscoveredTable, decideIncrements } from '../increments';
import { collectKeys, keyTransfer } from '../reconcile';
import { loadRun, type RunContext } from '../run-context';
import type { UnloadRecord } from '../run-files';
import { parseStepInput, type RunningUnload, STEP_INPUTS, type UnloadState } from '../state';

/** Redshift refused or aborted the unload; Aurora was not touched. */
export class UnloadFailedError extends SyncError {}

/** How long column discovery may take before the step gives up (Redshift queues queries). */
const DISCOVERY_TIMEOUT_MS = 40_000;
/**
 * The pauses between DescribeStatement calls while columns are discovered: from 50 ms, each
 * half again as long, at most 2 s. A catalog query takes a fraction of a second; polling every
 * 250 ms made each run wait 250 ms for one that took a few (the local run, bench/incremental.ts).
 */
const DISCOVERY_POLL = { pollMs: 50, pollGrowth: 1.5, maxPollMs: 2_000 } as const;

/**
 * How long the unload session stays open after one of its calls finishes. The next call is
 * submitted at most one "Wait for the unload" plus one check later (about a minute); a run
 * that failed without rolling back holds its transaction (and its locks on the source tables)
 * no longer than this.
 */
export const SESSION_KEEP_ALIVE_SECONDS = 600;

/**
 * How long one "Check whether the unload finished" follows the session before it hands back
 * to the state machine's Wait (its function's timeout is 120 s: see lib/function-access.ts).
 */
export const UNLOAD_CHECK_BUDGET_MS = 50_000;
/**
 * The pauses between DescribeStatement calls: from 100 ms, each half again as long as the one
 * before, at most 10 s, so a call is seen done at most half its time late (plus one pause).
 * Starting at 1 s and doubling, a 1.1 s unload of an increment was seen done at 3 s, and a 16 s
 * full one at 25 s (bench/incremental.ts). About 15 calls in a 50 s check instead of 8.
 */
const FIRST_PAUSE_MS = 100;
const PAUSE_GROWTH = 1.5;
const MAX_PAUSE_MS = 10_000;

export async function startUnload(state: unknown, deps: PipelineDeps): Promise<UnloadState> {
  const context = await loadRun(deps, parseStepInput(STEP_INPUTS.run, state).run);
  const { runId } = context.run;
  // Discover every source table's columns at once: one submitted query per table, then poll.
  const submitted = await Promise.all(
    context.tables.map((table) =>
      deps.warehouse.submitStatement(
        SOURCE_COLUMNS_SQL,
        { schema: table.source.schema, table: table.source.name },
        `${runStatementPrefix(runId)}columns of ${displayQualified(table.source)}`.slice(0, 500),
      ),
    ),
  );
  const discovered: DiscoveredTable[] = [];
  const unsyncedColumns: string[][] = [];
  for (const [index, table] of context.tables.entries()) {
    const statementId = submitted[index]!;
    await waitForStatement(deps.warehouse, statementId, {
      sleep: deps.sleep,
      timeoutMs: DISCOVERY_TIMEOUT_MS,
      ...DISCOVERY_POLL,
    });
    const source = parseSourceColumns(await deps.warehouse.fetchRows(statementId), table.source);
    const target = await targetColumns(deps.aurora, table.target);
    const planned = planColumns(table, source, target);
    discovered.push({
      table,
      source,
      liveExists: target !== null,
      transfer: {
        table,
        staging: { schema: STAGING_SCHEMA, name: runScopedName(runId, table.target) },
        columns: planned.columns,
        s3Prefix: tableS3Prefix(deps.settings.bucket, runId, table.target),
      },
    });
    unsyncedColumns.push([...planned.unsynced]);
    if (planned.unsynced.length > 0) {
      deps.log.warn('source columns the live table does not have are not synced', {
        table: displayQualified(table.target),
        columns: planned.unsynced,
      });
    }
  }
  const increments = await decideIncrements(deps, discovered, context.setup.fullRefresh);
  const transfers: TableTransfer[] = [];
  for (const [index, table] of discovered.entries()) {
    const increment = increments[index] ?? null;
    const delta = increment ? deltaFilter(increment) : undefined;
    const keys = await keyTransfer(deps, runId, table, increment);
    transfers.push({ ...table.transfer, ...(delta ? { delta } : {}), ...(keys ? { keys } : {}) });
  }
  const plan = buildUnloadSession(transfers, {
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
  await context.files.writeUnload({
    submittedAt: new Date(deps.now()).toISOString(),
    transfers,
    batches: plan.batches,
    transactionStartIndex: plan.transactionStartIndex,
    figures: plan.figures,
    oversize: plan.oversize,
    unsyncedColumns,
    wholeFigures: plan.wholeFigures,
    increments,
    keyUnloads: plan.keyUnloads,
  });
  const { statementId, sessionId } = await deps.warehouse.submitInSession(
    plan.batches[0]!,
    batchName(runId, 0, plan.batches.length),
    { keepAliveSeconds: SESSION_KEEP_ALIVE_SECONDS },
  );
  deps.log.info('unload submitted', {
    runId,
    sessionId,
    statementId,
    tables: transfers.length,
    batches: plan.batches.length,
  });
  return {
    finished: false,
    sessionId,
    batch: 0,
    batches: plan.batches.length,
    statementId,
    status: 'SUBMITTED',
    transactionStartedAt: null,
  };
}

/**
 * How every Data API statement a run submits is named, so that fail-run finds them all by
 * this prefix (ListStatements' StatementName, see stopRunStatements), whatever the state it is
 * given says. The space after the run id keeps one run's prefix from matching a longer id.
 */
export function runStatementPrefix(runId: string): string {
  return `redshift-aurora-sync ${runId} `;
}

function batchName(runId: string, batch: number, batches: number): string {
  return `${runStatementPrefix(runId)}unload ${batch + 1}/${batches}`.slice(0, 500);
}

/** Which call of the run's unload session a statement named by batchName is: 1-based, of how many. */
export function unloadCallOf(
  runId: string,
  name: string,
): { readonly call: number; readonly calls: number } | null {
  if (!name.startsWith(runStatementPrefix(runId))) return null;
  const match = /^unload (\d+)\/(\d+)$/.exec(name.slice(runStatementPrefix(runId).length));
  return match ? { call: Number(match[1]), calls: Number(match[2]) } : null;
}

/** The name of a ROLLBACK on the run's unload session. */
export function rollbackName(runId: string): string {
  return `${runStatementPrefix(runId)}rollback`.slice(0, 500);
}

/**
 * "Check whether the unload finished": follows the unload session for up to
 * UNLOAD_CHECK_BUDGET_MS inside the function (DescribeStatement with backoff), so a long unload
 * costs the execution's history one Wait and one Task per ~minute instead of per poll. Each
 * call that finishes is checked to have run in the first call's transaction, its tables'
 * figures and file lists go to the run's folder, and the next call is submitted on the
 * session. Returns the progress to wait on, or, once the last call (with `COMMIT`) finished,
 * each table's name and number of files.
 */
export async function checkUnload(state: unknown, deps: PipelineDeps): Promise<UnloadState> {
  const input = parseStepInput(STEP_INPUTS.checkUnload, state);
  const { run } = input;
  let unload = input.unload;
  const started = deps.now();
  let pause = FIRST_PAUSE_MS;
  let context: RunContext | undefined;
  let record: UnloadRecord | undefined;
  for (;;) {
    const status = await deps.warehouse.describe(unload.statementId);
    if (status.state === 'failed') {
      await rollBack(deps, run.runId, unload);
      throw new UnloadFailedError(
        `Redshift did not unload the tables (call ${unload.batch + 1} of ${unload.batches}, statement ${unload.statementId}, ${status.status}): ${status.error}`,
      );
    }
    if (status.state === 'done') {
      context ??= await loadRun(deps, run);
      record ??= await context.files.readUnload();
      const startedAt = await transactionStart(deps, run.runId, unload, record);
      await refuseOversized(deps, run.runId, unload, record);
      for (const [index, transfer] of record.transfers.entries()) {
        if (record.figures[index]!.batch === unload.batch) {
          await collectTable(deps, context, transfer, unload.statementId, record.figures[index]!);
        }
        const whole = record.wholeFigures[index];
        if (whole && whole.batch === unload.batch) {
          const rows = await deps.warehouse.fetchRows(unload.statementId, whole.index);
          await context.files.writeWholeFigures(
            transfer.table.target,
            oneFiguresRow(rows, transfer, 'whole-table figures'),
          );
        }
        if (record.keyUnloads[index]?.batch === unload.batch) {
          await collectKeys(deps, context.files, transfer);
        }
      }
      const next = unload.batch + 1;
      if (next === unload.batches) {
        const tables = [];
        for (const transfer of record.transfers) {
          // The key files of a reconcile are imported after the data files, by the same loop.
          const files = await context.files.readFiles(transfer.table.target);
          const keys = transfer.keys ? await context.files.readKeyFiles(transfer.table.target) : [];
          tables.push({
            target: displayQualified(transfer.table.target),
            files: files.length + keys.length,
          });
        }
        deps.log.info('unload finished', { runId: run.runId, tables: tables.length });
        const { sessionId, batches, statementId } = unload;
        return { finished: true, sessionId, batches, statementId, status: status.status, tables };
      }
      const submitted = await deps.warehouse.submitInSession(
        record.batches[next]!,
        batchName(run.runId, next, unload.batches),
        { sessionId: unload.sessionId },
      );
      unload = {
        ...unload,
        batch: next,
        statementId: submitted.statementId,
        status: 'SUBMITTED',
        transactionStartedAt: startedAt,
      };
      pause = FIRST_PAUSE_MS;
      continue;
    }
    const waited = deps.now() - started;
    if (waited >= UNLOAD_CHECK_BUDGET_MS) return { ...unload, status: status.status };
    await deps.sleep(Math.min(pause, UNLOAD_CHECK_BUDGET_MS - waited));
    pause = Math.min(pause * PAUSE_GROWTH, MAX_PAUSE_MS);
  }
}

/**
 * The start of the transaction the finished call ran in; a call that ran in another
 * transaction than the first one's fails the run, since its tables would come from another
 * snapshot than the others'.
 */
async function transactionStart(
  deps: PipelineDeps,
  runId: string,
  unload: RunningUnload,
  record: UnloadRecord,
): Promise<string> {
  const rows = await deps.warehouse.fetchRows(
    unload.statementId,
    record.transactionStartIndex[unload.batch],
  );
  const value = rows[0]?.transaction_started;
  if (rows.length !== 1 || value === null || value === undefined) {
    throw new UnloadFailedError(
      `call ${unload.batch + 1} of the unload (statement ${unload.statementId}) did not return the transaction's start (${JSON.stringify(rows)}).`,
    );
  }
  const startedAt = String(value);
  if (unload.transactionStartedAt !== null && startedAt !== unload.transactionStartedAt) {
    await rollBack(deps, runId, unload);
    throw new UnloadFailedError(
      `call ${unload.batch + 1} of the unload ran in a transaction that started at ${startedAt}, not in the first call's (started at ${unload.transactionStartedAt}): Redshift committed between calls of the session, so the tables would not come from one snapshot. Nothing was loaded; report this with the session id ${unload.sessionId}.`,
    );
  }
  return startedAt;
}

/**
 * Reads the oversize counts the finished call ran; any value too long to unload fails the run
 * here, before the call with the first UNLOAD is submitted (buildUnloadSession).
 */
async function refuseOversized(
  deps: PipelineDeps,
  runId: string,
  unload: RunningUnload,
  record: UnloadRecord,
): Promise<void> {
  const found = [];
  for (const [index, transfer] of record.transfers.entries()) {
    const at = record.oversize[index];
    if (!at || at.batch !== unload.batch) continue;
    const rows = await deps.warehouse.fetchRows(unload.statementId, at.index);
    if (rows.length !== 1) {
      throw new UnloadFailedError(
        `the oversize count of ${displayQualified(transfer.table.source)} returned ${rows.length} rows, not 1.`,
      );
    }
    found.push({ transfer, columns: parseOversized(rows[0]!, transfer) });
  }
  const refusal = oversizedValuesError(found);
  if (refusal) {
    await rollBack(deps, runId, unload);
    throw refusal;
  }
}

/**
 * Ends the session's transaction after a failure, so it holds no locks until the session closes.
 * fail-run then leaves the session alone once it sees this ROLLBACK finished (./unload-stop.ts),
 * which holds only because nothing is submitted on the session after it: throw right after.
 */
async function rollBack(deps: PipelineDeps, runId: string, unload: RunningUnload): Promise<void> {
  try {
    await deps.warehouse.submitInSession(['ROLLBACK'], rollbackName(runId), {
      sessionId: unload.sessionId,
    });
  } catch (error) {
    deps.log.warn('could not roll back the unload session; it closes after its keep-alive', {
      sessionId: unload.sessionId,
      keepAliveSeconds: SESSION_KEEP_ALIVE_SECONDS,
      error: error instanceof Error ? error.message : String(error),
    });
  }
}

function oneFiguresRow(
  rows: readonly Record<string, unknown>[],
  transfer: TableTransfer,
  what: string,
): TableFigures {
  if (rows.length !== 1) {
    throw new UnloadFailedError(
      `the ${what} query of ${displayQualified(transfer.table.source)} returned ${rows.length} rows, not 1.`,
    );
  }
  return parseFigures(rows[0]!, transfer.columns);
}

/** One unloaded table: its figures and its file list to the run's folder, checked against each other. */
async function collectTable(
  deps: PipelineDeps,
  context: RunContext,
  transfer: TableTransfer,
  statementId: string,
  figuresAt: SessionStatement,
): Promise<void> {
  const figures = oneFiguresRow(
    await deps.warehouse.fetchRows(statementId, figuresAt.index),
    transfer,
    'figures',
  );
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
  await context.files.writeFiles(transfer.table.target, files);
  deps.metrics.record('RowsUnloaded', 'Count', figures.rows);
}
