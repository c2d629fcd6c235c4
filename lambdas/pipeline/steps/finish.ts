/**
 * "Record the run and clean up" and "Clean up after the failed run": write one control-table
 * row per table, expire old versions, delete the run's files and staging leftovers, and
 * produce the run summary. A failure is also sent to the people who operate the pipeline.
 */
import { displayQualified, parseQualifiedName } from '../../core/identifiers';
import type { TableIncrement } from '../../core/increment/mode';
import { dropStaleStaging } from '../../core/load/staging';
import { readPartitionLayout } from '../../core/partitions/layout';
import { dropExpiredVersions } from '../../core/swap/engine';
import type { TableTransfer } from '../../core/transfer/types';
import type { PipelineDeps } from '../deps';
import { plannedIncrement } from '../increments';
import { loadRun, type RunContext } from '../run-context';
import type { UnloadRecord } from '../run-files';
import { releaseRunLease } from '../run-lease';
import { recordRun } from '../run-records';
import { type CaughtError, parseStepInput, STEP_INPUTS, type StepInput } from '../state';
import {
  blockersFor,
  endedFor,
  type RunSummary,
  type TableOutcome,
  type TableSummary,
} from '../summary';
import { stopRunStatements } from './unload-stop';

/** What the run's last step knows of how it went. */
type EndState = Pick<StepInput<'finish'>, 'loaded' | 'locks' | 'swap' | 'terminated'>;

async function tableSummaries(
  context: RunContext,
  record: UnloadRecord | null,
  end: EndState,
  status: TableOutcome,
): Promise<TableSummary[]> {
  const targets = context.run.targets;
  const swapped = end.swap?.swapped === true ? end.swap : null;
  const summaries: TableSummary[] = [];
  for (const [index, table] of context.tables.entries()) {
    const target = displayQualified(table.target);
    const loaded = end.loaded?.find((item) => item.target === target);
    const published = swapped?.published?.find((item) => item.target === target);
    const increment = record?.increments[index] ?? null;
    summaries.push({
      target,
      source: displayQualified(table.source),
      strategy: table.strategy,
      status,
      rows: loaded?.rows ?? null,
      waitedSeconds: end.locks ? Math.round(end.locks.waitedSeconds * 10) / 10 : null,
      blockers: blockersFor(target, targets, end.locks?.blockersSeen ?? []),
      terminated: endedFor(target, targets, end.terminated?.ended ?? []),
      unsyncedColumns: record?.unsyncedColumns[index] ?? [],
      partitionsReplaced:
        swapped?.replaced?.find((item) => item.target === target)?.partitions ?? null,
      mode: increment?.mode ?? null,
      fullRefreshReason: increment?.fullReason ?? null,
      watermarkBefore: increment?.watermarkBefore ?? null,
      watermarkAfter:
        increment && swapped && record
          ? await newWatermark(context, record.transfers[index]!, increment)
          : (increment?.watermarkBefore ?? null),
      inserted: published?.inserted ?? null,
      updated: published?.updated ?? null,
      deleted: published?.deleted ?? null,
    });
  }
  return summaries;
}

/** The watermark the swap wrote: the cursor's max in the whole source table of the snapshot. */
async function newWatermark(
  context: RunContext,
  transfer: TableTransfer,
  increment: TableIncrement,
): Promise<string | null> {
  const { watermark } = await plannedIncrement(context.files, transfer, increment);
  return watermark.value;
}

async function readUnloadIfAny(context: RunContext): Promise<UnloadRecord | null> {
  try {
    return await context.files.readUnload();
  } catch {
    return null;
  }
}

async function recordTables(
  deps: PipelineDeps,
  context: RunContext,
  record: UnloadRecord | null,
  tables: readonly TableSummary[],
  error: string | null,
): Promise<void> {
  for (const table of tables) {
    await recordRun(deps.aurora, {
      runId: context.run.runId,
      target: parseQualifiedName(table.target, 'target'),
      environment: context.run.environment,
      strategy: table.strategy,
      status: table.status,
      rows: table.rows,
      unloadSubmittedAt: record?.submittedAt ?? null,
      startedAt: context.run.startedAt,
      waitedSeconds: table.waitedSeconds,
      blockers: table.blockers,
      error,
      mode: table.mode,
      fullRefreshReason: table.fullRefreshReason,
      watermarkBefore: table.watermarkBefore,
      watermarkAfter: table.watermarkAfter,
      inserted: table.inserted,
      updated: table.updated,
      deleted: table.deleted,
    });
  }
}

export async function finishRun(state: unknown, deps: PipelineDeps): Promise<RunSummary> {
  const end = parseStepInput(STEP_INPUTS.finish, state);
  const context = await loadRun(deps, end.run);
  const record = await context.files.readUnload();
  const tables = await tableSummaries(context, record, end, 'swapped');
  await recordTables(deps, context, record, tables, null);
  for (const table of context.tables) {
    if (table.strategy !== 'rename') continue;
    // A partitioned table keeps the replaced versions of each partition, under its name.
    const layout = await readPartitionLayout(deps.aurora, table.target);
    const versioned = layout ? layout.partitions.map(({ partition }) => partition) : [table.target];
    for (const live of versioned) {
      const expired = await dropExpiredVersions(deps.aurora, live, {
        keep: context.config.retention.keepVersions,
        lockTimeoutMs: context.config.locks.lockTimeoutMs,
      });
      if (expired.leftForLater.length > 0) {
        deps.log.warn('old versions still in use are left for the next run', {
          table: displayQualified(live),
          versions: expired.leftForLater,
        });
      }
      for (const blocked of expired.blockedByDependents) {
        deps.log.warn('an old version is kept: objects still depend on it', {
          table: displayQualified(live),
          version: blocked.retiredTable,
          dependents: blocked.dependents,
        });
      }
    }
  }
  await context.files.deleteAll();
  await releaseRunLease(deps.aurora, context.run.environment, context.run.runId);
  for (const table of tables) deps.metrics.record('RowsSynced', 'Count', table.rows ?? 0);
  deps.metrics.record('LockWaitSeconds', 'Seconds', end.locks?.waitedSeconds ?? 0);
  deps.metrics.record('TablesSwapped', 'Count', tables.length);
  return {
    status: 'SUCCEEDED',
    runId: context.run.runId,
    environment: context.run.environment,
    startedAt: context.run.startedAt,
    finishedAt: new Date(deps.now()).toISOString(),
    unloadSubmittedAt: record.submittedAt,
    tables,
    error: null,
  };
}

/** The error Step Functions caught, as a name and a message a person can act on. */
export function caughtError(error: CaughtError | undefined): { name: string; message: string } {
  if (!error) return { name: 'UnknownError', message: 'the run failed without an error' };
  let message = error.Cause ?? '';
  try {
    // A Lambda error's Cause is its JSON: {"errorType", "errorMessage", "trace"}.
    const parsed = JSON.parse(message) as { errorMessage?: unknown };
    if (typeof parsed.errorMessage === 'string') message = parsed.errorMessage;
  } catch {
    // a plain-text cause (States.Timeout, States.TaskFailed, ...) is already the message
  }
  return { name: error.Error, message: message || error.Error };
}

export async function failRun(
  state: unknown,
  deps: PipelineDeps,
): Promise<{ error: string; cause: string; summary: RunSummary }> {
  const end = parseStepInput(STEP_INPUTS.fail, state);
  const error = caughtError(end.error);
  let summary: RunSummary = {
    status: 'FAILED',
    runId: end.run?.runId ?? null,
    environment: deps.settings.environment,
    startedAt: end.run?.startedAt ?? null,
    finishedAt: new Date(deps.now()).toISOString(),
    unloadSubmittedAt: null,
    tables: [],
    error,
  };
  // Without $.run the run never got past "Prepare the run" (bad input, or another run
  // holds the lease): there is nothing of ours to clean, and someone else's run must be left alone.
  if (end.run) {
    const run = end.run;
    const cleanup: string[] = [];
    const attempt = async (what: string, action: () => Promise<unknown>) => {
      try {
        await action();
      } catch (cleanupError) {
        cleanup.push(`${what}: ${(cleanupError as Error).message}`);
      }
    };
    // First, so that Redshift stops writing into the run's folder before it is deleted, and
    // lets go of the source tables. Not only what $.unload names: the failed step may have
    // submitted a call the state does not know of (stopRunStatements).
    if (!run.dryRun) {
      await attempt('cancel the unload still running in Redshift', async () => {
        const stopped = await stopRunStatements(deps, run.runId, end.unload);
        if (stopped.cancelled.length > 0 || stopped.rolledBack.length > 0) {
          deps.log.info("the run's Redshift statements were stopped", { ...stopped });
        }
      });
    }
    let context: RunContext | null = null;
    if (!run.dryRun) {
      await attempt("read the run's setup", async () => {
        context = await loadRun(deps, run);
      });
    }
    if (context) {
      const loaded: RunContext = context;
      const record = await readUnloadIfAny(loaded);
      const swapped = end.swap?.swapped === true;
      const tables = await tableSummaries(loaded, record, end, swapped ? 'swapped' : 'failed');
      summary = { ...summary, tables, unloadSubmittedAt: record?.submittedAt ?? null };
      // Staging belongs to this run alone (it holds the lease), and the live tables were
      // never touched unless the swap went through, in which case staging is already gone.
      await attempt('drop the staging tables', () => dropStaleStaging(deps.aurora, []));
      await attempt('record the run', () =>
        recordTables(deps, loaded, record, tables, `${error.name}: ${error.message}`),
      );
      await attempt('delete the run files', () => loaded.files.deleteAll());
    }
    // Last, so that no other run starts while this one's leftovers are still being cleared.
    await attempt('give back the run lease', () =>
      releaseRunLease(deps.aurora, run.environment, run.runId),
    );
    if (cleanup.length > 0) deps.log.warn('clean-up after the failure was incomplete', { cleanup });
  }
  deps.metrics.record('RunsFailed', 'Count', 1);
  await deps.notifier.notify(
    `Redshift-to-Aurora sync failed in ${deps.settings.environment}`.slice(0, 99),
    [
      `Run ${summary.runId ?? '(not started)'} failed: ${error.name}`,
      '',
      error.message,
      '',
      'Live tables are unchanged unless a table below says "swapped".',
      ...summary.tables.map((table) => `- ${table.target}: ${table.status}`),
    ].join('\n'),
  );
  return { error: error.name, cause: error.message, summary };
}
