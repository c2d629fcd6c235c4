/**
 * The run summary: the execution's output, the last line a local run prints, and what the
 * failure notice says. One shape for success and failure, one row per table.
 */
import type { BlockerState, EndedSessionState } from './state';

export type TableOutcome = 'swapped' | 'failed' | 'not swapped';

export interface TableSummary extends IncrementOutcome {
  readonly target: string;
  readonly source: string;
  readonly strategy: string;
  readonly status: TableOutcome;
  /** Rows now live (swapped), or staged when the run failed after loading; null when unknown. */
  readonly rows: number | null;
  readonly waitedSeconds: number | null;
  /** Sessions that made the swap wait, each with its class and what onMaxWait does with it. */
  readonly blockers: readonly BlockerState[];
  /** Sessions onMaxWait had ended (their class said terminate), and what came of it. */
  readonly terminated: readonly EndedSessionState[];
  /** Source columns the live table does not have, left out. */
  readonly unsyncedColumns: readonly string[];
  /**
   * A partitioned live table: the partitions the swap replaced (their rows changed, or the
   * range was new); every other partition was left as it was. Null for other tables.
   */
  readonly partitionsReplaced: readonly string[] | null;
}

/** How a table's rows moved this run: in the summary and in `redshift_sync.runs` alike. */
export interface IncrementOutcome {
  /** An incremental table's mode this run (`rows` then counts the delta); null for other tables. */
  readonly mode: 'full' | 'incremental' | null;
  /** Why an incremental table was taken whole. */
  readonly fullRefreshReason: string | null;
  /** The watermark the run started from, and the one live now stands at (unchanged unless swapped). */
  readonly watermarkBefore: string | null;
  readonly watermarkAfter: string | null;
  /** Rows the swap inserted, updated and deleted, where its publish counts them (merge, increments). */
  readonly inserted: number | null;
  readonly updated: number | null;
  readonly deleted: number | null;
}

export interface RunSummary {
  /** NOT_STARTED: refused before doing anything (another run of the environment is in progress). */
  readonly status: 'SUCCEEDED' | 'FAILED' | 'NOT_STARTED';
  readonly runId: string | null;
  readonly environment: string;
  readonly startedAt: string | null;
  readonly finishedAt: string;
  /** When the unload (the Redshift snapshot) was submitted. */
  readonly unloadSubmittedAt: string | null;
  readonly tables: readonly TableSummary[];
  readonly error: { readonly name: string; readonly message: string } | null;
}

/** The blockers that concern one target: on it, or on something of the run's not tied to one table. */
export function blockersFor(
  target: string,
  targets: readonly string[],
  seen: readonly BlockerState[],
): BlockerState[] {
  return seen.filter(
    (blocker) => blocker.relation === target || !targets.includes(blocker.relation),
  );
}

/** The ended sessions that concern one target, as blockersFor. */
export function endedFor(
  target: string,
  targets: readonly string[],
  ended: readonly EndedSessionState[],
): EndedSessionState[] {
  return ended.filter((session) =>
    session.relations.some((relation) => relation === target || !targets.includes(relation)),
  );
}
