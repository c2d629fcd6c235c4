/**
 * The JSON the state machine carries between states, and the edge checks each step runs on
 * what it receives. Only small things travel in the state (256 KB limit): the run's plan,
 * column lists and figures live beside the run's files in the bucket (run-files.ts).
 */
// A namespace import: see lambdas/core/config-fields.ts.
import * as z from 'zod';
import { ConfigError } from '../core/errors';
import type { BlockerClass } from '../core/locks/classes';
import type { LockHolder, Subcluster } from '../core/locks/inspect';
import type { TerminatedSession } from '../core/locks/terminate';
import type { GateHistory } from '../core/swap/gate-decision';
import { maxWaitAction, type OnMaxWait, type OnMaxWaitSetting } from '../core/swap/policy';

/** `$.run`: set by "Prepare the run", read by every later step; checked by `expectRun`. */
const runState = z.object({
  runId: z.string().min(1),
  environment: z.string(),
  startedAt: z.string(),
  dryRun: z.boolean(),
  pollIntervalSeconds: z.number(),
  maxWaitSeconds: z.number(),
  /** The targets of this run, as configured (`schema.table`). */
  targets: z.array(z.string()),
});
export type RunState = Readonly<z.output<typeof runState>>;

/**
 * `$.unload`: the unload session's progress (its calls run one after another on one session,
 * in one transaction), then the tables it unloaded.
 */
export type UnloadState =
  | {
      readonly finished: false;
      readonly sessionId: string;
      /** The call running now, and how many there are. */
      readonly batch: number;
      readonly batches: number;
      readonly statementId: string;
      readonly status: string;
      /** The transaction's start as the first call read it (null until it finished). */
      readonly transactionStartedAt: string | null;
    }
  | {
      readonly finished: true;
      readonly sessionId: string;
      readonly batches: number;
      readonly statementId: string;
      readonly status: string;
      readonly tables: readonly TableFilesState[];
    };

/**
 * One item of "Load each table": a target and how many files it has. The files themselves
 * stay in the run's folder (RunFiles.readFiles), so the state does not grow with them.
 */
export interface TableFilesState {
  readonly target: string;
  readonly files: number;
}

/** `$.imported`: how far "Import files into staging" got through a table's files. */
export interface ImportedFilesState {
  /** Index of the next file to import. */
  readonly next: number;
  readonly remaining: number;
  /** Rows imported so far (every call's). */
  readonly rows: number;
}

/** A table that passed the quality gate: the result of one "Load each table" iteration. */
export interface LoadedTableState {
  readonly target: string;
  readonly rows: number;
  readonly sourceRows: number;
  readonly indexesBuilt: number;
}

/** A session that made the swap wait, as the run summary shows it. */
export interface BlockerState {
  readonly pid: number | null;
  readonly user: string | null;
  readonly application: string | null;
  readonly clientAddr: string | null;
  readonly state: string;
  readonly relation: string;
  readonly mode: string;
  readonly transactionSeconds: number | null;
  readonly query: string | null;
  readonly reason: string;
  /** On Aurora Limitless: the node the session runs on, and where it holds the lock. */
  readonly subcluster?: Subcluster;
  /** Its kind (blockerClass), the key a per-class onMaxWait uses. */
  readonly blockerClass: BlockerClass;
  /** What onMaxWait does with it at maxWaitSeconds, and why not `terminate` when asked (MaxWaitAction). */
  readonly atMaxWait: OnMaxWait;
  readonly atMaxWaitException: string | null;
}

/** `$.locks`: set by "Check locks on the live tables". */
export interface LocksState {
  readonly decision: 'swap' | 'wait' | 'terminate';
  /** When the run first looked at the locks (ms since the epoch). */
  readonly firstCheckAt: number;
  readonly waitedSeconds: number;
  readonly checks: number;
  /** Who blocks right now. */
  readonly blockers: readonly BlockerState[];
  /** Every distinct session that made the run wait. */
  readonly blockersSeen: readonly BlockerState[];
  /** What the swap's attempts ran into so far (the lock gate's memory between states). */
  readonly history: GateHistory;
}

/**
 * One session onMaxWait had ended, for the run summary: what it was, on what, and what came of
 * it. Small, since it adds up over the rounds of ending sessions in the state.
 */
export interface EndedSessionState {
  readonly pid: number | null;
  readonly gid: string | null;
  readonly blockerClass: BlockerClass;
  /** The targets it blocked (`schema.table`). */
  readonly relations: readonly string[];
  readonly outcome: TerminatedSession['outcome'];
  readonly reason: string | null;
}

/** `$.terminated`: set by "Terminate the sessions blocking the swap". */
export interface TerminatedState {
  /** This round's records, in full. */
  readonly terminated: readonly TerminatedSession[];
  /** Every round's, in short; absent in states written before it. */
  readonly ended?: readonly EndedSessionState[];
  readonly history: GateHistory;
}

export function endedSession(record: TerminatedSession): EndedSessionState {
  return {
    pid: record.pid,
    gid: record.gid,
    blockerClass: record.blockerClass,
    relations: record.relations.map((relation) => `${relation.schema}.${relation.name}`),
    outcome: record.outcome,
    reason: record.reason,
  };
}

/** `$.swap` */
export type SwapState =
  | {
      readonly swapped: true;
      readonly attempts: number;
      readonly lockWaitMs: number;
      readonly lockHeldMs: number;
      readonly swappedAt: string;
      /** Per table, rows the swap inserted, updated and deleted, where its publish counts them. */
      readonly published?: readonly PublishedRows[];
      /** Per partitioned table, the partitions the swap replaced (the others are untouched). */
      readonly replaced?: readonly ReplacedPartitions[];
    }
  | {
      readonly swapped: false;
      readonly attempts: number;
      readonly reason: string;
      readonly history: GateHistory;
    };

export interface PublishedRows {
  readonly target: string;
  readonly inserted: number;
  readonly updated: number;
  readonly deleted: number;
}

export interface ReplacedPartitions {
  readonly target: string;
  readonly partitions: readonly string[];
}

/** Step Functions' catch output at `$.error`. */
export interface CaughtError {
  readonly Error: string;
  readonly Cause?: string;
}

export function describeBlocker(
  holder: LockHolder,
  reason: string,
  onMaxWait: OnMaxWaitSetting,
): BlockerState {
  const action = maxWaitAction(holder, onMaxWait);
  return {
    pid: holder.pid,
    user: holder.user,
    application: holder.applicationName,
    clientAddr: holder.clientAddr,
    state: holder.state,
    relation: `${holder.relation.schema}.${holder.relation.name}`,
    mode: holder.mode,
    transactionSeconds: holder.transactionAgeSeconds,
    query: holder.query,
    reason,
    ...(holder.subcluster ? { subcluster: holder.subcluster } : {}),
    blockerClass: action.blockerClass,
    atMaxWait: action.action,
    atMaxWaitException: action.exception,
  };
}

/**
 * A blocker as one line for people: its sentence and what onMaxWait does with it, e.g. `...;
 * at maxWaitSeconds: terminate`. Blockers recorded before the per-class policy have no action.
 */
export function blockerLine(blocker: BlockerState): string {
  if (!blocker.atMaxWait) return blocker.reason;
  const exception = blocker.atMaxWaitException ? ` (${blocker.atMaxWaitException})` : '';
  return `${blocker.reason}; at maxWaitSeconds: ${blocker.atMaxWait}${exception}`;
}

/** The state a step was handed, checked for the fields it reads. */
export function expectObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${what} must be a JSON object, not ${JSON.stringify(value)}.`);
  }
  return value as Record<string, unknown>;
}

/** `$.run` of a step's input, every field checked: a step handed anything else stops before it acts. */
export function expectRun(state: unknown): RunState {
  const result = runState.safeParse(expectObject(state, 'the step input').run);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = ['$.run', ...issue.path.map(String)].join('.');
    throw new ConfigError(
      `$.run is not a run this pipeline started (${path}: ${issue.message}): the step input must come from "Prepare the run".`,
    );
  }
  return result.data;
}
