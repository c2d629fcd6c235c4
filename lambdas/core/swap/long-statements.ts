/**
 * The statements of prepareStaging that can outlast a transport's per-call limit: index builds
 * and ANALYZE on a large staging table (the RDS Data API ends every call after 45 s). Each is
 * sent as `longRunning`, so a call that is cut off leaves its statement running in the
 * database; this module then follows the statement there, one short statement per call, until
 * it has finished, has stopped without finishing, or the bounded wait is over.
 *
 * - Still running: a client backend other than ours reports progress on the staging table
 *   (pg_stat_progress_create_index / pg_stat_progress_analyze), or holds or awaits a lock on it
 *   in a mode the statement takes. The lock covers what progress reporting does not: the wait
 *   for the lock before the work, and the commit after it. Lock modes rather than query text
 *   identify the statement, because the text a transport shows in pg_stat_activity is its own
 *   business.
 * - Done: the index exists and is valid (pg_index.indisvalid); ANALYZE counted one more run
 *   (pg_stat_all_tables.analyze_count). This is read only after a check found nothing running:
 *   a statement's locks are released after its commit is visible, so that order cannot miss
 *   work that had just finished.
 */
import { InternalError, SyncError } from '../errors';
import {
  displayIdentifier,
  displayQualified,
  type QualifiedName,
  quoteQualified,
} from '../identifiers';
import { DataApiTimeoutError } from '../load/errors';
import { ADMIN_SCHEMA } from '../schema/admin';
import type { SqlClient, SqlParameters } from '../sql-client';

/** Long enough for big builds, short enough that a Lambda's 15 minutes still hold the rest. */
export const DEFAULT_MAX_WAIT_MS = 14 * 60_000;
export const DEFAULT_POLL_INTERVAL_MS = 5_000;

export interface LongStatementOptions {
  /**
   * How long after prepareStaging began it may still wait for a statement that the transport
   * cut off and that keeps running in the database. Past it, prepareStaging gives up with
   * LongStatementStillRunningError (the statement itself goes on). Default 14 minutes.
   */
  readonly maxWaitMs?: number;
  /** Between two checks on a statement that keeps running. Default 5 s. */
  readonly pollIntervalMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** The clock the bound is measured on, in milliseconds. */
  readonly now?: () => number;
}

/** The bound on waiting, fixed when prepareStaging begins and shared by all its statements. */
export interface WaitBudget {
  readonly maxWaitMs: number;
  readonly deadline: number;
  readonly pollIntervalMs: number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function startWaitBudget(options: LongStatementOptions = {}): WaitBudget {
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) {
    throw new InternalError(
      `maxWaitMs is ${maxWaitMs}; give the milliseconds prepareStaging may wait for long statements, 0 or more.`,
    );
  }
  if (!Number.isFinite(pollIntervalMs) || pollIntervalMs <= 0) {
    throw new InternalError(
      `pollIntervalMs is ${pollIntervalMs}; give the milliseconds between checks, more than 0.`,
    );
  }
  const now = options.now ?? Date.now;
  return {
    maxWaitMs,
    deadline: now() + maxWaitMs,
    pollIntervalMs,
    sleep: options.sleep ?? realSleep,
    now,
  };
}

/** A backend still running a statement that was cut off, as pg_stat_activity shows it. */
export interface ServerBackend {
  readonly pid: number;
  readonly seconds: number;
  /** The progress view's phase; null while it waits for its lock (or commits). */
  readonly phase: string | null;
  readonly waitEventType: string | null;
  readonly query: string;
}

/**
 * A statement that the transport cut off has since ended in the database without doing its
 * work: it failed or was cancelled. Nothing was published.
 */
export class LongStatementStoppedError extends SyncError {
  constructor(
    message: string,
    readonly staging: QualifiedName,
    readonly statement: string,
  ) {
    super(message);
  }
}

/** An index build on staging stopped before it left a valid index. */
export class IndexBuildStoppedError extends LongStatementStoppedError {
  constructor(
    message: string,
    staging: QualifiedName,
    statement: string,
    readonly indexName: string,
  ) {
    super(message, staging, statement);
  }
}

/** ANALYZE of staging stopped before it recorded statistics. */
export class AnalyzeStoppedError extends LongStatementStoppedError {}

/** ALTER TABLE ... SET LOGGED of staging stopped before the table was logged. */
export class SetLoggedStoppedError extends LongStatementStoppedError {}

/** A statement cut off by the transport was still running when the bounded wait ran out. */
export class LongStatementStillRunningError extends SyncError {
  constructor(
    message: string,
    readonly staging: QualifiedName,
    readonly statement: string,
    readonly backends: readonly ServerBackend[],
  ) {
    super(message);
  }
}

type FollowedKind = 'index build' | 'analyze' | 'set logged';

/**
 * Where each kind reports progress (a table rewrite by ALTER TABLE has no progress view), and
 * the table locks it holds or waits for until it ends.
 */
const FOLLOWED: Readonly<Record<FollowedKind, { progressView: string | null; lockModes: string }>> =
  {
    // CREATE INDEX takes SHARE; ALTER TABLE ... ADD CONSTRAINT (a primary key, unique or
    // exclusion constraint) takes ACCESS EXCLUSIVE.
    'index build': {
      progressView: 'pg_stat_progress_create_index',
      lockModes: 'ShareLock,AccessExclusiveLock',
    },
    analyze: { progressView: 'pg_stat_progress_analyze', lockModes: 'ShareUpdateExclusiveLock' },
    // ALTER TABLE ... SET LOGGED rewrites the table under ACCESS EXCLUSIVE.
    'set logged': { progressView: null, lockModes: 'AccessExclusiveLock' },
  };

/** Client backends other than ours that are still working on the table (see the module comment). */
function runningBackendsSql(kind: FollowedKind): string {
  const view = FOLLOWED[kind].progressView;
  return `SELECT a.pid,
         coalesce(extract(epoch FROM clock_timestamp() - a.query_start), 0)::int AS seconds,
         ${view ? 'p.phase' : 'NULL::text AS phase'}, a.wait_event_type AS "waitEventType",
         left(a.query, 300) AS query
  FROM (SELECT to_regclass(format('%I.%I', :schema::text, :name::text))::oid AS oid) t
  JOIN pg_stat_activity a ON a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
  ${view ? `LEFT JOIN ${view} p ON p.pid = a.pid` : ''}
  WHERE ${view ? 'p.relid = t.oid' : 'false'}
     OR EXISTS (SELECT FROM pg_locks l
                WHERE l.pid = a.pid AND l.locktype = 'relation' AND l.database = a.datid
                  AND l.relation = t.oid AND l.mode = ANY (string_to_array(:lockModes, ',')))
  ORDER BY a.pid`;
}

const INDEX_STATE_SQL = `SELECT i.indisvalid AS valid FROM pg_index i
  WHERE i.indexrelid = to_regclass(format('%I.%I', :schema::text, :indexName::text))
    AND i.indrelid = to_regclass(format('%I.%I', :schema::text, :name::text))`;

const ANALYZED_AT_SQL = `SELECT analyzed_at::text AS "analyzedAt" FROM ${ADMIN_SCHEMA}.staging_analyzed
  WHERE staging_schema = :schema AND staging_table = :name`;

const ANALYZE_SQL = `SELECT ${ADMIN_SCHEMA}.analyze_table(format('%I.%I', :schema::text, :name::text)::regclass)`;

/** Each backend in a few words, for a person deciding whether to wait or to cancel it. */
export function describeBackends(backends: readonly ServerBackend[]): string {
  return backends
    .map((backend) => {
      const doing = [
        `for ${backend.seconds} s`,
        backend.phase ? `phase "${backend.phase}"` : null,
        backend.waitEventType === 'Lock' ? 'waiting for a lock' : null,
      ].filter((part) => part !== null);
      return `pid ${backend.pid} (${doing.join(', ')}): ${backend.query}`;
    })
    .join('; ');
}

/** Why a statement whose call failed can still have run: the opening of a stopped-statement message. */
/**
 * Client backends other than ours whose running statement carries `:marker`, a comment the
 * statement opens with (so pg_stat_activity's truncated text still holds it).
 */
export const MARKED_RUNNING_SQL = `SELECT a.pid,
         coalesce(extract(epoch FROM clock_timestamp() - a.query_start), 0)::int AS seconds,
         NULL::text AS phase, a.wait_event_type AS "waitEventType", left(a.query, 300) AS query
  FROM pg_stat_activity a
  WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
    AND a.state <> 'idle' AND strpos(a.query, :marker::text) > 0
  ORDER BY a.pid`;

export const CUT_OFF =
  "The call was cut off at the transport's time limit (45 s over the RDS Data API) and the statement kept running in the database";

/**
 * Sends the statement as longRunning. Returns true when the transport cut the call off, so
 * that the statement's end must be followed in the database; false when it finished in time.
 */
export async function sendLongRunning(
  db: SqlClient,
  sql: string,
  parameters?: Record<string, string>,
): Promise<boolean> {
  try {
    await db.query(sql, parameters, { longRunning: true });
    return false;
  } catch (error) {
    if (error instanceof DataApiTimeoutError) return true;
    throw error;
  }
}

/**
 * A statement whose call was cut off, as waitWhileRunning follows it: how to find the backends
 * still running it, and how to name it to a person.
 */
export interface FollowedStatement {
  readonly staging: QualifiedName;
  /** The statement as sent. */
  readonly statement: string;
  /** What it does, for messages: "the build of index x". */
  readonly what: string;
  /** Whose bounded wait ran out, for messages: "prepareStaging's". */
  readonly waiter: string;
  /** Where a person sees how far it is: "pg_stat_progress_analyze shows how far it is". */
  readonly progressHint: string;
  /** Lists the client backends other than ours that still run it, as ServerBackend rows. */
  readonly runningSql: string;
  readonly runningParameters: SqlParameters;
}

/** Returns once nothing runs the statement any more; throws when the budget runs out first. */
export async function waitWhileRunning(
  db: SqlClient,
  followed: FollowedStatement,
  budget: WaitBudget,
): Promise<void> {
  const { staging, statement } = followed;
  for (;;) {
    const backends = await db.query<ServerBackend & Record<string, unknown>>(
      followed.runningSql,
      followed.runningParameters,
    );
    if (backends.length === 0) return;
    const remainingMs = budget.deadline - budget.now();
    if (remainingMs <= 0) {
      throw new LongStatementStillRunningError(
        `${displayQualified(staging)}: ${followed.what} is still running in the database at the end of ${followed.waiter} bounded wait (maxWaitMs, ${budget.maxWaitMs / 1000} s): ${describeBackends(backends)}. It goes on; nothing was published. Restart the run once it has finished (${followed.progressHint}), or end it with pg_cancel_backend(pid); a table this large needs a longer maxWaitMs, in a step allowed to run that long.`,
        staging,
        statement,
        backends,
      );
    }
    await budget.sleep(Math.min(budget.pollIntervalMs, remainingMs));
  }
}

/** An index build or ANALYZE of prepareStaging, followed by progress view and table locks. */
function followedByKind(
  kind: FollowedKind,
  staging: QualifiedName,
  statement: string,
  what: string,
): FollowedStatement {
  return {
    staging,
    statement,
    what,
    waiter: "prepareStaging's",
    progressHint: FOLLOWED[kind].progressView
      ? `${FOLLOWED[kind].progressView} shows how far it is`
      : 'pg_locks shows it holding ACCESS EXCLUSIVE on the staging table',
    runningSql: runningBackendsSql(kind),
    runningParameters: {
      schema: staging.schema,
      name: staging.name,
      lockModes: FOLLOWED[kind].lockModes,
    },
  };
}

/**
 * Runs one statement of staging_index_builds, which creates the index `indexName` on staging
 * (CREATE INDEX, or ALTER TABLE ... ADD CONSTRAINT for the index a constraint owns). If the
 * call is cut off, waits for the build and requires a valid index at its end.
 */
export async function buildStagingIndex(
  db: SqlClient,
  staging: QualifiedName,
  build: { readonly statement: string; readonly indexName: string },
  budget: WaitBudget,
): Promise<void> {
  if (!(await sendLongRunning(db, build.statement))) return;
  const index = displayIdentifier(build.indexName);
  await waitWhileRunning(
    db,
    followedByKind('index build', staging, build.statement, `the build of index ${index}`),
    budget,
  );
  const [state] = await db.query<{ valid: boolean }>(INDEX_STATE_SQL, {
    schema: staging.schema,
    name: staging.name,
    indexName: build.indexName,
  });
  if (state?.valid) return;
  throw new IndexBuildStoppedError(
    `${displayQualified(staging)}: the build of index ${index} stopped before it finished. ${CUT_OFF}, where it has since ended ${state ? 'leaving the index invalid' : 'without creating the index'}: it failed or was cancelled, and the database log says why (for example a UNIQUE index over duplicate values in staging). Nothing was published; fix the cause if it failed, then restart the run. The statement: ${build.statement}`,
    staging,
    build.statement,
    build.indexName,
  );
}

/**
 * ANALYZE of staging (through the installed analyze_table). If the call is cut off, waits for
 * it and requires the time analyze_table records in the ANALYZE's own transaction to have moved
 * since it began.
 */
export async function analyzeStaging(
  db: SqlClient,
  staging: QualifiedName,
  budget: WaitBudget,
): Promise<void> {
  const table = { schema: staging.schema, name: staging.name };
  const analyzedAt = async () =>
    (await db.query<{ analyzedAt: string }>(ANALYZED_AT_SQL, table))[0]?.analyzedAt ?? null;
  const before = await analyzedAt();
  if (!(await sendLongRunning(db, ANALYZE_SQL, table))) return;
  await waitWhileRunning(db, followedByKind('analyze', staging, ANALYZE_SQL, 'ANALYZE'), budget);
  const after = await analyzedAt();
  if (after !== null && after !== before) return;
  throw new AnalyzeStoppedError(
    `${displayQualified(staging)}: ANALYZE stopped before it finished. ${CUT_OFF}, where it has since ended without recording statistics: it failed or was cancelled, and the database log says why. Nothing was published; restart the run.`,
    staging,
    ANALYZE_SQL,
  );
}

const PERSISTENCE_SQL = `SELECT c.relpersistence::text AS persistence FROM pg_class c
  WHERE c.oid = to_regclass(format('%I.%I', :schema::text, :name::text))`;

/**
 * Makes an unlogged staging table logged (ALTER TABLE ... SET LOGGED, which rewrites it under
 * ACCESS EXCLUSIVE; nobody but the pipeline reads staging). If the call is cut off, waits for
 * the rewrite and requires the table to be logged at its end.
 */
export async function setStagingLogged(
  db: SqlClient,
  staging: QualifiedName,
  budget: WaitBudget,
): Promise<void> {
  const statement = `ALTER TABLE ${quoteQualified(staging)} SET LOGGED`;
  if (!(await sendLongRunning(db, statement))) return;
  await waitWhileRunning(
    db,
    followedByKind('set logged', staging, statement, 'making the staging table logged'),
    budget,
  );
  const [state] = await db.query<{ persistence: string }>(PERSISTENCE_SQL, {
    schema: staging.schema,
    name: staging.name,
  });
  if (state?.persistence === 'p') return;
  throw new SetLoggedStoppedError(
    `${displayQualified(staging)}: making the staging table logged stopped before it finished. ${CUT_OFF}, where it has since ended with the table still unlogged: it failed or was cancelled, and the database log says why. Nothing was published; restart the run.`,
    staging,
    statement,
  );
}
