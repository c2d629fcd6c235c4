import type { QualifiedName } from '../identifiers';

/**
 * How staging data becomes live:
 * - `rename`: staging is renamed into place in constant time; grants, owner, comments,
 *   indexes, RLS and dependent views are carried over to it. Needs ACCESS EXCLUSIVE briefly.
 * - `truncate`: TRUNCATE live and INSERT from staging. Every dependent keeps its identity, but
 *   ACCESS EXCLUSIVE is held for the whole copy.
 * - `merge`: upsert changed rows and delete vanished ones by primary key. ROW EXCLUSIVE only,
 *   so readers are never blocked.
 */
export const SWAP_STRATEGIES = ['rename', 'truncate', 'merge'] as const;
export type SwapStrategy = (typeof SWAP_STRATEGIES)[number];

/** The lock modes as pg_locks.mode spells them, weakest first. */
export type LockMode =
  | 'AccessShareLock'
  | 'RowShareLock'
  | 'RowExclusiveLock'
  | 'ShareUpdateExclusiveLock'
  | 'ShareLock'
  | 'ShareRowExclusiveLock'
  | 'ExclusiveLock'
  | 'AccessExclusiveLock';

/** One table of a run: its live table, the checked staging table that replaces its contents. */
export interface TableSwap {
  readonly live: QualifiedName;
  readonly staging: QualifiedName;
  readonly strategy: SwapStrategy;
  /** `merge` only: key columns; discovered from the live table's primary key when absent. */
  readonly primaryKey?: readonly string[];
}

/**
 * The strongest lock each strategy takes on the relations it touches. The swap takes all of
 * them up front, before any change (see ../schema/swap.ts for the order), so that no later
 * statement has to wait for, or upgrade, a lock.
 */
export interface StrategyLocks {
  readonly live: LockMode;
  /** Dropped (truncate, merge) or renamed into place (rename): ACCESS EXCLUSIVE either way. */
  readonly staging: LockMode;
  /** Views that select from the live table, re-pointed with CREATE OR REPLACE VIEW; null when untouched. */
  readonly dependentViews: LockMode | null;
  /**
   * Sequences owned by the live table's columns (serial or identity), given to the new version
   * and moved with it by ALTER TABLE SET SCHEMA; null when untouched.
   */
  readonly liveSequences: LockMode | null;
  /** Sequences owned by staging's columns: dropped or moved with it. */
  readonly stagingSequences: LockMode;
}

/** How a table is published: by its strategy, or, in an incremental run, as an increment. */
export type PublishKind = SwapStrategy | 'increment';

export const STRATEGY_LOCKS: Readonly<Record<PublishKind, StrategyLocks>> = {
  rename: {
    live: 'AccessExclusiveLock',
    staging: 'AccessExclusiveLock',
    dependentViews: 'AccessExclusiveLock',
    liveSequences: 'AccessExclusiveLock',
    stagingSequences: 'AccessExclusiveLock',
  },
  truncate: {
    live: 'AccessExclusiveLock',
    staging: 'AccessExclusiveLock',
    dependentViews: null,
    liveSequences: null,
    stagingSequences: 'AccessExclusiveLock',
  },
  merge: {
    live: 'RowExclusiveLock',
    staging: 'AccessExclusiveLock',
    dependentViews: null,
    liveSequences: null,
    stagingSequences: 'AccessExclusiveLock',
  },
  // UPDATE and INSERT (publish_increment), and with deletes "reconcile" merge's kind of DELETE:
  // row-level writes only, as merge.
  increment: {
    live: 'RowExclusiveLock',
    staging: 'AccessExclusiveLock',
    dependentViews: null,
    liveSequences: null,
    stagingSequences: 'AccessExclusiveLock',
  },
};
