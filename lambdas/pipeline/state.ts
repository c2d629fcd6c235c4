/**
 * The JSON the state machine carries between states, as zod schemas, and `parseStepInput`, the
 * one parse each step runs on what it is handed, in Lambda and in the local run alike. Only small
 * things travel in the state (256 KB limit); the rest lives in the run's folder (run-files.ts).
 *
 * Unknown keys are dropped, not refused: every state carries what earlier steps wrote, which a
 * step need not read; and each part was written by this pipeline, maybe by the version before a
 * deploy the run went on across, whose extra fields must not stop the run.
 */
// A namespace import: see lambdas/core/config-fields.ts.
import * as z from 'zod';
import { CONFIG_LIMITS } from '../core/config-defaults';
import { count, pathText } from '../core/config-fields';
import { ConfigError } from '../core/errors';
import { displayQualified } from '../core/identifiers';
import { type LockHolder, subcluster } from '../core/locks/inspect';
import { type TerminatedSession, terminatedSession } from '../core/locks/terminate';
import { gateHistory } from '../core/swap/gate-decision';
import { maxWaitAction, ON_MAX_WAIT, type OnMaxWaitSetting } from '../core/swap/policy';

/** A step input that is not what the state machine hands that step: it stops before it acts. */
export class StepInputError extends ConfigError {}

const within = (limits: { readonly min: number; readonly max: number }) =>
  z.int().min(limits.min).max(limits.max);

/** `$.run`: set by "Prepare the run", read by every later step. */
const runState = z.object({
  runId: z.string().min(1),
  environment: z.string(),
  startedAt: z.string(),
  dryRun: z.boolean(),
  pollIntervalSeconds: within(CONFIG_LIMITS.pollIntervalSeconds),
  maxWaitSeconds: within(CONFIG_LIMITS.maxWaitSeconds),
  /** The targets of this run, as configured (`schema.table`). */
  targets: z.array(z.string()),
});
export type RunState = Readonly<z.infer<typeof runState>>;

/** `$.unload` while its calls run (one after another on one session, in one transaction). */
const runningUnload = z.object({
  finished: z.literal(false),
  sessionId: z.string(),
  /** The call running now, and how many there are. */
  batch: count,
  batches: count,
  statementId: z.string(),
  status: z.string(),
  /** The transaction's start as the first call read it (null until it finished). */
  transactionStartedAt: z.string().nullable(),
});
export type RunningUnload = z.infer<typeof runningUnload>;

/**
 * One item of "Load each table" (`$.table`): a target and how many files it has. The files
 * themselves stay in the run's folder (RunFiles.readFiles), so the state does not grow with them.
 */
const tableFiles = z.object({ target: z.string(), files: count });
export type TableFilesState = z.infer<typeof tableFiles>;

/** `$.unload`: the unload in progress, then the tables it unloaded. */
export type UnloadState =
  | RunningUnload
  | (Omit<RunningUnload, 'finished' | 'batch' | 'transactionStartedAt'> & {
      finished: true;
      tables: TableFilesState[];
    });

/** `$.imported`: how far "Import files into staging" got through a table's files. */
const importedFiles = z.object({
  /** Index of the next file to import. */
  next: count,
  remaining: count,
  /** Rows imported so far (every call's). */
  rows: count,
});
export type ImportedFilesState = z.infer<typeof importedFiles>;

/** A table that passed the quality gate: the result of one "Load each table" iteration. */
const loadedTable = z.object({
  target: z.string(),
  rows: count,
  sourceRows: count,
  indexesBuilt: count,
});
export type LoadedTableState = z.infer<typeof loadedTable>;

/** A session that made the swap wait, as the run summary shows it. */
const blockerState = z.object({
  pid: z.int().nullable(),
  user: z.string().nullable(),
  application: z.string().nullable(),
  clientAddr: z.string().nullable(),
  state: z.string(),
  relation: z.string(),
  mode: z.string(),
  transactionSeconds: z.number().nullable(),
  query: z.string().nullable(),
  reason: z.string(),
  /** On Aurora Limitless: the node the session runs on, and where it holds the lock. */
  subcluster: subcluster.optional(),
  // The next three are absent from a state written before the per-class policy: such a state
  // can reach this version when a deploy lands while a run waits at the lock gate.
  /** Its kind (blockerClass), the key a per-class onMaxWait uses. */
  blockerClass: terminatedSession.shape.blockerClass.optional(),
  /** What onMaxWait does with it at maxWaitSeconds, and why not `terminate` when asked (MaxWaitAction). */
  atMaxWait: z.enum(ON_MAX_WAIT).optional(),
  atMaxWaitException: z.string().nullable().optional(),
});
export type BlockerState = z.infer<typeof blockerState>;

/** `$.locks`: set by "Check locks on the live tables". */
const locksState = z.object({
  decision: z.enum(['swap', 'wait', 'terminate']),
  /** When the run first looked at the locks (ms since the epoch). */
  firstCheckAt: z.number(),
  waitedSeconds: z.number(),
  checks: count,
  /** Who blocks right now. */
  blockers: z.array(blockerState),
  /** Every distinct session that made the run wait. */
  blockersSeen: z.array(blockerState),
  history: gateHistory,
});
export type LocksState = z.infer<typeof locksState>;

/**
 * One session onMaxWait had ended, for the run summary: what it was, on what, and what came of
 * it. Small, since it adds up over the rounds of ending sessions in the state.
 */
const endedSessionState = terminatedSession
  .pick({ pid: true, gid: true, blockerClass: true, outcome: true, reason: true })
  .extend({
    /** The targets it blocked (`schema.table`). */
    relations: z.array(z.string()),
  });
export type EndedSessionState = z.infer<typeof endedSessionState>;

/** `$.terminated`: set by "Terminate the sessions blocking the swap". */
const terminatedState = z.object({
  /** This round's records, in full. */
  terminated: z.array(terminatedSession),
  /** Every round's, in short; absent in states written before it. */
  ended: z.array(endedSessionState).optional(),
  history: gateHistory,
});
export type TerminatedState = z.infer<typeof terminatedState>;

/** Per table, rows the swap inserted, updated and deleted, where its publish counts them. */
const publishedRows = z.object({
  target: z.string(),
  inserted: count,
  updated: count,
  deleted: count,
});
export type PublishedRows = z.infer<typeof publishedRows>;

const replacedPartitions = z.object({ target: z.string(), partitions: z.array(z.string()) });
export type ReplacedPartitions = z.infer<typeof replacedPartitions>;

/** `$.swap`: set by "Swap staging into live". */
const swapState = z.discriminatedUnion('swapped', [
  z.object({
    swapped: z.literal(true),
    attempts: count,
    lockWaitMs: z.number(),
    lockHeldMs: z.number(),
    swappedAt: z.string(),
    published: z.array(publishedRows).optional(),
    /** Per partitioned table, the partitions the swap replaced (the others are untouched). */
    replaced: z.array(replacedPartitions).optional(),
  }),
  z.object({
    swapped: z.literal(false),
    attempts: count,
    reason: z.string(),
    history: gateHistory,
  }),
]);
export type SwapState = z.infer<typeof swapState>;

/** Step Functions' catch output at `$.error`. */
const caughtError = z.object({ Error: z.string(), Cause: z.string().optional() });
export type CaughtError = z.infer<typeof caughtError>;

/** What each part of the state is, and which state writes it, for the message when it is not. */
const PARTS: Readonly<Record<string, readonly [what: string, from: string]>> = {
  run: ['a run this pipeline started', 'Prepare the run'],
  unload: ['an unload in progress', 'Unload the tables from Redshift'],
  table: ['a table of the run and its number of files', 'Check whether the unload finished'],
  imported: ["an import's progress", 'Import files into staging'],
  loaded: ['the tables loaded', 'Load each table'],
  locks: ['a lock check', 'Check locks on the live tables'],
  terminated: ['a round of ending blockers', 'Terminate the sessions blocking the swap'],
  swap: ['a swap attempt', 'Swap staging into live'],
  context: ["the execution's context", 'Load the configuration'],
};

/** The gate's history as the steps after the first lock check have it. */
const gateParts = {
  locks: locksState.optional(),
  terminated: terminatedState.optional(),
  swap: swapState.optional(),
};

/** What each step reads of the state it is handed; see the top of this file for unknown keys. */
export const STEP_INPUTS = {
  prepare: z.object({
    // Each parsed by its own reader, whose messages name the configuration or the execution input.
    config: z.unknown(),
    request: z.unknown(),
    context: z.object({ executionName: z.string(), executionArn: z.string() }),
  }),
  run: z.object({ run: runState }),
  checkUnload: z.object({ run: runState, unload: runningUnload }),
  table: z.object({
    run: runState,
    table: tableFiles,
    imported: importedFiles.default({ next: 0, remaining: 0, rows: 0 }),
  }),
  gate: z.object({ run: runState, ...gateParts }),
  finish: z.object({ run: runState, loaded: z.array(loadedTable).optional(), ...gateParts }),
  /**
   * fail-run reads what it can: a part that does not parse is left out rather than stopping the
   * clean-up and the notice (it may be why the run failed). A finished unload has nothing to stop.
   */
  fail: z.object({
    run: runState.optional().catch(undefined),
    error: caughtError.optional().catch(undefined),
    unload: runningUnload.nullable().catch(null),
    loaded: z.array(loadedTable).optional().catch(undefined),
    locks: locksState.optional().catch(undefined),
    terminated: terminatedState.optional().catch(undefined),
    swap: swapState.optional().catch(undefined),
  }),
};

export type StepInput<Step extends keyof typeof STEP_INPUTS> = z.output<(typeof STEP_INPUTS)[Step]>;

/**
 * The state a step was handed, parsed by its schema: a step handed anything else stops before
 * it acts, with a StepInputError naming the first bad field, what is wrong with it and which
 * state writes it.
 */
export function parseStepInput<S extends z.ZodType>(schema: S, state: unknown): z.output<S> {
  const result = schema.safeParse(state);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const [part] = issue.path;
  if (part === undefined) {
    throw new StepInputError(
      `the step input must be a JSON object, not ${JSON.stringify(state)}.`,
      {
        cause: result.error,
      },
    );
  }
  const [what, from] = PARTS[String(part)] ?? ['what this step reads', 'its state'];
  throw new StepInputError(
    `$.${String(part)} is not ${what} (${pathText(['$', ...issue.path])}: ${issue.message}): the step input must come from "${from}".`,
    { cause: result.error },
  );
}

export function endedSession(record: TerminatedSession): EndedSessionState {
  return {
    pid: record.pid,
    gid: record.gid,
    blockerClass: record.blockerClass,
    relations: record.relations.map(displayQualified),
    outcome: record.outcome,
    reason: record.reason,
  };
}

/**
 * How many sessions a list in the state keeps, and how much of each query: a state holds at
 * most 256 KB, and passing it fails the execution with States.DataLimitExceeded, which no Catch
 * catches (so no clean-up, no notice). A busy table can see hundreds of blockers over a long
 * wait; the first ones are kept (they held longest), and the logs name every one in full.
 */
export const STATE_SESSIONS = 50;
export const STATE_QUERY_CHARACTERS = 200;

/** A query as the state keeps it: its first STATE_QUERY_CHARACTERS characters. */
export function stateQuery(query: string | null): string | null {
  return query === null ? null : query.slice(0, STATE_QUERY_CHARACTERS);
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
    relation: displayQualified(holder.relation),
    mode: holder.mode,
    transactionSeconds: holder.transactionAgeSeconds,
    query: stateQuery(holder.query),
    reason,
    ...(holder.subcluster ? { subcluster: holder.subcluster } : {}),
    blockerClass: action.blockerClass,
    atMaxWait: action.action,
    atMaxWaitException: action.exception,
  };
}

/**
 * A blocker as one line for people: its sentence and what onMaxWait does with it, e.g. `...;
 * at maxWaitSeconds: terminate`. Blockers recorded before the per-class policy have no action
 * (a run waiting at the gate across a deploy, or an older execution `trigger --follow` shows).
 */
export function blockerLine(blocker: BlockerState): string {
  if (!blocker.atMaxWait) return blocker.reason;
  const exception = blocker.atMaxWaitException ? ` (${blocker.atMaxWaitException})` : '';
  return `${blocker.reason}; at maxWaitSeconds: ${blocker.atMaxWait}${exception}`;
}
