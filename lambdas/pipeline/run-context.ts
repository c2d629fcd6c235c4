/**
 * What every step after "Prepare the run" starts from: the run's plan read back from
 * the bucket, its configuration parsed again (the edge is wherever JSON comes in), and the
 * tables it covers.
 */
import { parseRuntimeConfig, type RuntimeConfig, selectTables } from '../core/config';
import { ConfigError } from '../core/errors';
import { displayQualified, parseQualifiedName, type QualifiedName } from '../core/identifiers';
import { plannedPartitions } from '../core/partitions/prepare';
import type { PreflightTable } from '../core/swap/limitless-preflight';
import { buildSwapPlan, type SwapPlan, type TableToPlan } from '../core/swap/plan';
import { resolveMergeKey } from '../core/swap/primary-key';
import type { TableSwap } from '../core/swap/types';
import type { SyncTable, TableTransfer } from '../core/transfer/types';
import type { PipelineDeps } from './deps';
import { plannedIncrement } from './increments';
import { RunFiles, type RunSetup, type UnloadRecord } from './run-files';
import type { RunState } from './state';

export interface RunContext {
  readonly run: RunState;
  readonly setup: RunSetup;
  readonly config: RuntimeConfig;
  readonly tables: readonly SyncTable[];
  readonly files: RunFiles;
}

export async function loadRun(deps: PipelineDeps, run: RunState): Promise<RunContext> {
  const files = new RunFiles(deps.objects, deps.settings.bucket, run.runId);
  const setup = await files.readSetup();
  const config = parseRuntimeConfig(setup.config, `run ${run.runId}'s configuration`);
  const tables = selectTables(config, setup.targets, `run ${run.runId}'s table list`);
  return { run, setup, config, tables, files };
}

/** The transfer of one target of the run, found by the name the state carries. */
export function transferFor(record: UnloadRecord, target: string): TableTransfer {
  const wanted = parseQualifiedName(target, 'the table in the step input');
  const transfer = record.transfers.find(
    (candidate) =>
      candidate.table.target.schema === wanted.schema &&
      candidate.table.target.name === wanted.name,
  );
  if (!transfer) {
    throw new ConfigError(
      `${displayQualified(wanted)} is not a table of this run's unload (submitted ${record.submittedAt}); the step input did not come from this run's "Check whether the unload finished".`,
    );
  }
  return transfer;
}

export function targetName(target: QualifiedName): string {
  return displayQualified(target);
}

/**
 * The swap of every table of the run, merge keys resolved against the live tables; for an
 * incremental table, its new watermark and, for a delta, the increment and its proof.
 */
export async function runSwapPlan(
  deps: PipelineDeps,
  context: RunContext,
  record: UnloadRecord,
): Promise<SwapPlan> {
  const swaps: TableToPlan[] = [];
  for (const [index, transfer] of record.transfers.entries()) {
    const swap: TableSwap = {
      live: transfer.table.target,
      staging: transfer.staging,
      strategy: transfer.table.strategy,
      ...(transfer.table.primaryKey ? { primaryKey: transfer.table.primaryKey } : {}),
    };
    const increment = record.increments[index];
    const extra: Pick<TableToPlan, 'increment' | 'watermark'> = increment
      ? await plannedIncrement(context.files, transfer, increment)
      : {};
    const merges = extra.increment ? extra.increment.mode === 'merge' : swap.strategy === 'merge';
    // A reconcile matches by the key its key table was unloaded with (resolved at the unload).
    const key = transfer.keys
      ? transfer.keys.columns.map(({ name }) => name)
      : merges
        ? await resolveMergeKey(deps.aurora, swap)
        : undefined;
    // A partitioned live table under "rename": the partitions prepareStaging found changed.
    const partitions =
      swap.strategy === 'rename' && !extra.increment
        ? await plannedPartitions(deps.aurora, swap)
        : null;
    swaps.push({
      ...swap,
      ...extra,
      ...(key ? { primaryKey: key } : {}),
      ...(partitions ? { partitions } : {}),
    });
  }
  return buildSwapPlan(swaps, {
    runId: context.run.runId,
    lockTimeoutMs: context.config.locks.lockTimeoutMs,
  });
}

/**
 * A table as the preflight checks it this run: a delta as an increment (checked as a merge, with
 * its mode), else by its strategy; with the configured key, which the preflight checks where the
 * publish updates rows by it (against a Limitless shard key).
 */
export function preflightTable(
  table: SyncTable,
  staging: QualifiedName,
  delta: boolean,
): PreflightTable {
  return {
    live: table.target,
    staging,
    strategy: delta ? 'merge' : table.strategy,
    ...(delta ? { increment: table.incremental!.mode } : {}),
    ...(table.primaryKey ? { primaryKey: table.primaryKey } : {}),
  };
}
