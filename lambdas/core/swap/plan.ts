/**
 * The swap plan: what the one swap statement does, built and validated here (pure) and handed
 * to the server-side function as a bound jsonb parameter.
 */
import { createHash } from 'node:crypto';
import { ConfigError, InternalError } from '../errors';
import { displayQualified, type QualifiedName, sameQualifiedName } from '../identifiers';
import type { FiguredColumn } from '../transfer/figures';
import type { IncrementMode } from '../transfer/types';
import { type LockMode, STRATEGY_LOCKS, type SwapStrategy, type TableSwap } from './types';

/** An incremental run's table: how its delta is applied and what live must equal afterwards. */
export interface PlannedIncrement {
  readonly mode: IncrementMode;
  /** The source's whole-table figures of the snapshot (figuresRow) over these columns. */
  readonly proof: {
    /** The cursor column: the proof refuses, naming it, a source where it is NULL. */
    readonly cursor: string;
    readonly columns: readonly FiguredColumn[];
    readonly figures: Readonly<Record<string, string | null>>;
  };
  /**
   * `deletes: "reconcile"`: the table holding the source's keys of the snapshot; live's rows
   * whose key it lacks are deleted (primaryKey names the key columns).
   */
  readonly keys?: QualifiedName;
}

/** The watermark the swap writes with an incremental table's rows (every run of it, full or not). */
export interface PlannedWatermark {
  /** The source table the watermark is taken over: another one later makes the run full. */
  readonly source: QualifiedName;
  readonly cursor: string;
  readonly cursorKind: string;
  /** The cursor's max in the snapshot; null when the source is empty. */
  readonly value: string | null;
  /**
   * Why the table's next run must be full although this one published it (its cursor is NULL
   * in some rows of the snapshot: nullCursorReason); null: the next run may be an increment.
   */
  readonly fullRefreshReason: string | null;
}

/**
 * A reader that arrives while an attempt waits for its locks queues behind it for at most
 * lock_timeout plus the time the swap then holds its locks (15 to 30 ms for rename): 50 ms
 * keeps that under 100 ms. An attempt still gets through whenever the holders present finish
 * within 50 ms; longer ones are the gate's to wait for.
 */
export const DEFAULT_LOCK_TIMEOUT_MS = 50;

/** The `lock_timeout` a run may ask for, in ms. */
export const LOCK_TIMEOUT_MS_LIMITS = { min: 10, max: 60_000 } as const;

/** A changed partition of a partitioned live table, and the table that replaces it. */
export interface PlannedPartition {
  readonly partition: QualifiedName;
  /** Built by preparePartitions in the staging schema: the partition's rows from staging. */
  readonly replacement: QualifiedName;
  /** The name the replaced partition gets in the retired schema. */
  readonly retiredName: string;
}

export interface PlannedTable {
  readonly strategy: SwapStrategy;
  readonly live: QualifiedName;
  readonly staging: QualifiedName;
  /** Null for a partitioned table none of whose partitions changed: it is not locked at all. */
  readonly liveLock: LockMode | null;
  readonly stagingLock: LockMode;
  /** Views on live, locked before the tables; null when the strategy leaves them alone. */
  readonly viewLock: LockMode | null;
  /** Sequences owned by live's columns; null when the strategy leaves them alone. */
  readonly liveSequenceLock: LockMode | null;
  readonly stagingSequenceLock: LockMode;
  /** `rename`: the name the replaced live table gets in the retired schema. */
  readonly retiredName: string;
  /** `merge`, an increment in mode merge, and one with a key table: resolved key columns. */
  readonly primaryKey: readonly string[];
  /** An incremental run: published by publish_increment instead of the strategy. */
  readonly increment: PlannedIncrement | null;
  readonly watermark: PlannedWatermark | null;
  /**
   * A partitioned live table published partition by partition (../partitions): the changed
   * ones; null for any other table.
   */
  readonly partitions: readonly PlannedPartition[] | null;
}

export interface SwapPlan {
  readonly runId: string;
  readonly lockTimeoutMs: number;
  readonly tables: readonly PlannedTable[];
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$/;

export function validateRunId(runId: string): string {
  if (!RUN_ID.test(runId)) {
    throw new ConfigError(
      `run id ${JSON.stringify(runId)} must be 1 to 80 letters, digits, '_', '-', '.' or ':', starting with a letter or digit.`,
    );
  }
  return runId;
}

export function validateLockTimeoutMs(value: number, what = 'lockTimeoutMs'): number {
  const { min, max } = LOCK_TIMEOUT_MS_LIMITS;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(
      `${what} is ${JSON.stringify(value)}; give a whole number of milliseconds from ${min} to ${max} (default ${DEFAULT_LOCK_TIMEOUT_MS}). Readers queue behind the swap for up to this long.`,
    );
  }
  return value;
}

/**
 * The name a table gets for one run (its staging table, and the retired version it replaces):
 * readable (its live name, cut short) and unique per run and table (a hash of both), within
 * PostgreSQL's 63-byte limit. Also the table's folder name in the bucket.
 */
export function runScopedName(runId: string, live: QualifiedName): string {
  const readable = live.name
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 30);
  const hash = createHash('sha256')
    .update(JSON.stringify([runId, live.schema, live.name]))
    .digest('hex')
    .slice(0, 12);
  return `${readable}__${hash}`;
}

/** A table to plan: its swap, and for an incremental table its increment and watermark. */
export type TableToPlan = TableSwap & {
  readonly primaryKey?: readonly string[];
  readonly increment?: PlannedIncrement;
  readonly watermark?: PlannedWatermark;
  /** A partitioned live table: its changed partitions and their replacements. */
  readonly partitions?: readonly Pick<PlannedPartition, 'partition' | 'replacement'>[];
};

export function buildSwapPlan(
  tables: readonly TableToPlan[],
  options: { readonly runId: string; readonly lockTimeoutMs?: number },
): SwapPlan {
  const runId = validateRunId(options.runId);
  const lockTimeoutMs = validateLockTimeoutMs(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  if (tables.length === 0) throw new InternalError('the swap was planned with no tables.');
  tables.forEach((table, index) => {
    const clash = tables.findIndex(
      (other, otherIndex) =>
        otherIndex !== index &&
        (sameQualifiedName(other.live, table.live) ||
          sameQualifiedName(other.staging, table.staging) ||
          sameQualifiedName(other.live, table.staging)),
    );
    if (clash !== -1) {
      throw new InternalError(
        `tables ${displayQualified(table.live)} and ${displayQualified(tables[clash]!.live)} share a live or staging table; each table may appear once in a run.`,
      );
    }
    const merges = table.increment ? table.increment.mode === 'merge' : table.strategy === 'merge';
    if ((merges || table.increment?.keys) && (table.primaryKey?.length ?? 0) === 0) {
      throw new InternalError(
        `${displayQualified(table.live)}: a merge or a reconcile needs its key columns resolved before planning.`,
      );
    }
  });
  return {
    runId,
    lockTimeoutMs,
    tables: tables.map((table) => {
      const partitioned = table.partitions !== undefined && !table.increment;
      const locks = STRATEGY_LOCKS[table.increment ? 'increment' : table.strategy];
      return {
        strategy: table.strategy,
        live: table.live,
        staging: table.staging,
        // DETACH PARTITION (without CONCURRENTLY) takes ACCESS EXCLUSIVE on the parent; the
        // parent's views and sequences stay as they are (only partitions are replaced).
        liveLock: partitioned
          ? table.partitions!.length > 0
            ? 'AccessExclusiveLock'
            : null
          : locks.live,
        stagingLock: locks.staging,
        viewLock: partitioned ? null : locks.dependentViews,
        liveSequenceLock: partitioned ? null : locks.liveSequences,
        stagingSequenceLock: locks.stagingSequences,
        retiredName: runScopedName(runId, table.live),
        primaryKey: table.primaryKey ?? [],
        increment: table.increment ?? null,
        watermark: table.watermark ?? null,
        partitions: partitioned
          ? table.partitions!.map((planned) => ({
              ...planned,
              retiredName: runScopedName(runId, planned.partition),
            }))
          : null,
      };
    }),
  };
}
