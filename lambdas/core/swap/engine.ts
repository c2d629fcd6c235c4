/**
 * The swap engine: prepare staging, swap, roll back, expire old versions (the preflight is in
 * ./preflight.ts, the installed SQL in ../schema).
 * Everything goes through a SqlClient, one statement per call, so the same code runs in
 * Lambda over the RDS Data API, locally over node-postgres, and in tests.
 */
import { randomUUID } from 'node:crypto';
import { ConfigError, DatabaseError, InternalError, SyncError } from '../errors';
import { displayQualified, type QualifiedName } from '../identifiers';
import { DataApiTimeoutError } from '../load/errors';
import { readPartitionLayout } from '../partitions/layout';
import { type PreparePartitionsOptions, preparePartitions } from '../partitions/prepare';
import { parentOf, preparePartitionRollback } from '../partitions/rollback';
import { ADMIN_SCHEMA, RETIRED_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import { asPreflightError, type BusyReason, busyReason } from './errors';
import {
  analyzeStaging,
  buildStagingIndex,
  setStagingLogged,
  startWaitBudget,
} from './long-statements';
import {
  buildSwapPlan,
  DEFAULT_LOCK_TIMEOUT_MS,
  type SwapPlan,
  validateLockTimeoutMs,
} from './plan';
import type { OnMaxWaitSetting } from './policy';
import { preflight } from './preflight';
import type { PublishKind, SwapStrategy, TableSwap } from './types';

/**
 * Gives a staging table exactly the live table's indexes (built before the swap, so the
 * exclusive part stays short) and fresh statistics. Each statement is its own call. Index
 * builds and ANALYZE are sent as long-running: when the transport cuts such a call off (the
 * RDS Data API after 45 s), the statement goes on in the database and is followed there until
 * it ends, at most `options.maxWaitMs` after prepareStaging began (see ./long-statements.ts).
 * For a partitioned live table, `options.locks` bounds the waits for the locks of the DDL done
 * on it beforehand (../partitions/lock-retry.ts).
 */
export async function prepareStaging(
  db: SqlClient,
  table: Pick<TableSwap, 'live' | 'staging'> & { readonly strategy?: PublishKind },
  options: PreparePartitionsOptions = {},
): Promise<{ readonly statements: readonly string[] }> {
  // A partitioned live table is published partition by partition: staging is only read, by
  // range, to build the replacements of the partitions it changes (../partitions).
  const layout =
    table.strategy === 'rename' || table.strategy === undefined
      ? await readPartitionLayout(db, table.live)
      : null;
  if (layout) {
    await preparePartitions(db, table, layout, options);
    return { statements: [] };
  }
  const budget = startWaitBudget(options);
  const parameters = {
    liveSchema: table.live.schema,
    liveName: table.live.name,
    stagingSchema: table.staging.schema,
    stagingName: table.staging.name,
  };
  // Staging created unlogged (a FOR ALL TABLES publication exists: see createStagingTable)
  // becomes logged before its indexes are built (a rewrite copies them too) when it is to be
  // the live table: a rename, or a first run. truncate and merge only copy from it.
  const [persistence] = await db.query<{ stagingUnlogged: boolean; liveExists: boolean }>(
    `SELECT c.relpersistence = 'u' AS "stagingUnlogged",
            to_regclass(format('%I.%I', :liveSchema::text, :liveName::text)) IS NOT NULL AS "liveExists"
     FROM pg_class c WHERE c.oid = format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass`,
    parameters,
  );
  const becomesLive =
    !persistence?.liveExists ||
    (table.strategy !== 'truncate' && table.strategy !== 'merge' && table.strategy !== 'increment');
  if (persistence?.stagingUnlogged && becomesLive) {
    await setStagingLogged(db, table.staging, budget);
  }
  // An increment's staging is read once, each row looked up in live by key (publish_increment
  // in ../schema/publish-increment.ts), then dropped: live's indexes on it would be built for
  // nothing (a 2 M-row table's two: 60 ms of a 20,000-row increment, bench/incremental.ts).
  if (table.strategy === 'increment' && persistence?.liveExists) {
    await analyzeStaging(db, table.staging, budget);
    return { statements: [] };
  }
  const rows = await db.query<{ statement: string; indexName: string | null }>(
    `SELECT s.statement, s.index_name AS "indexName" FROM
       (SELECT to_regclass(format('%I.%I', :liveSchema::text, :liveName::text)) AS live,
               format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass AS staging) t,
       LATERAL ${ADMIN_SCHEMA}.staging_index_builds(t.live, t.staging) s
     WHERE t.live IS NOT NULL`,
    parameters,
  );
  for (const { statement, indexName } of rows) {
    // Dropping a staging index that matches none on live is quick: no need to follow it.
    if (indexName === null) await db.query(statement);
    else await buildStagingIndex(db, table.staging, { statement, indexName }, budget);
  }
  await analyzeStaging(db, table.staging, budget);
  return { statements: rows.map((row) => row.statement) };
}

export interface TableSwapResult {
  readonly live: QualifiedName;
  readonly strategy: SwapStrategy;
  readonly result: Record<string, unknown>;
}

export interface SwapResult {
  readonly tables: readonly TableSwapResult[];
  /** How long the statement waited for its locks. */
  readonly lockWaitMs: number;
  /** How long it held them, from the last lock granted to the end of the work (commit follows). */
  readonly lockHeldMs: number;
  /** Every relation it locked before changing anything, in the order it locked them. */
  readonly locks: readonly { readonly relation: string; readonly mode: string }[];
}

export type SwapAttempt =
  | {
      readonly status: 'swapped';
      readonly result: SwapResult;
      /** An earlier call of this swap (same run id and tables) had committed: this one did nothing. */
      readonly alreadySwapped: boolean;
    }
  | { readonly status: 'busy'; readonly reason: BusyReason; readonly message: string };

/**
 * How a swap that copies rows (`truncate`, `merge`) is followed past a transport's per-call
 * limit: the RDS Data API cuts a call off after 45 s, and a large table's copy takes longer.
 */
export interface FollowCutOff {
  /** When following gives up, on `now`'s clock (milliseconds). */
  readonly deadline: number;
  readonly pollIntervalMs: number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
}

/** A swap statement cut off by the transport is still copying when the step's time is up. */
export class SwapStillRunningError extends SyncError {}

/** A swap statement cut off by the transport ended without committing: nothing changed. */
export class SwapCutOffEndedError extends SyncError {}

function parseSwapRow(row: { result: string } | undefined): SwapAttempt {
  const { alreadySwapped, ...result } = JSON.parse(row!.result) as SwapResult & {
    alreadySwapped: boolean;
  };
  return { status: 'swapped', result, alreadySwapped };
}

/**
 * One attempt at the swap statement. A lock timeout or deadlock comes back as `busy`: the
 * statement rolled back, nothing changed, and the caller waits and tries again. Safe to repeat
 * after a call whose answer was lost: a swap that committed comes back as swapped, with
 * `alreadySwapped` and the result it recorded.
 *
 * With `follow`, a swap whose strategy copies rows is sent with continueAfterTimeout
 * (`longRunning`) and, when the call is cut off, followed in the database until it commits or
 * ends (followSwap). `rename` only changes the catalog: always one short call.
 */
export async function attemptSwap(
  db: SqlClient,
  plan: SwapPlan,
  follow?: FollowCutOff,
): Promise<SwapAttempt> {
  const copies =
    follow !== undefined &&
    plan.tables.some((table) => table.strategy !== 'rename' || table.increment !== null);
  // The comment names the statement in pg_stat_activity.query while it runs.
  const marker = `redshift-aurora-sync swap ${randomUUID()}`;
  let since = '';
  if (copies) {
    const [clock] = await db.query<{ now: string }>('SELECT clock_timestamp()::text AS now');
    since = clock!.now;
  }
  try {
    const [row] = await db.query<{ result: string }>(
      `${copies ? `/* ${marker} */ ` : ''}SELECT ${ADMIN_SCHEMA}.swap(:plan::jsonb)::text AS result`,
      { plan: JSON.stringify(plan) },
      copies ? { longRunning: true } : {},
    );
    return parseSwapRow(row);
  } catch (error) {
    if (copies && error instanceof DataApiTimeoutError) {
      return followSwap(db, plan, marker, since, follow);
    }
    const reason = busyReason(error);
    if (reason) return { status: 'busy', reason, message: (error as Error).message };
    throw asPreflightError(error) ?? error;
  }
}

/**
 * Follows a swap statement the transport cut off, one short call per look: while a backend
 * other than ours runs it (its comment in pg_stat_activity, state not idle), wait; once none
 * does, the swap either committed, and recorded its result in `redshift_sync.swaps` in its own
 * transaction (run id, since the attempt began), or it rolled back. pg_stat_activity is read
 * before, and in another statement than, the swaps table: a backend reports idle only after
 * its commit is visible, so a swap that had just committed is not missed.
 * https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW
 */
async function followSwap(
  db: SqlClient,
  plan: SwapPlan,
  marker: string,
  since: string,
  follow: FollowCutOff,
): Promise<SwapAttempt> {
  const cutOffAt = follow.now();
  for (;;) {
    const [activity] = await db.query<{ running: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                      WHERE pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'
                        AND strpos(query, :marker) > 0) AS running`,
      { marker },
    );
    if (!activity!.running) break;
    if (follow.now() >= follow.deadline) {
      throw new SwapStillRunningError(
        `the swap of run ${plan.runId} was cut off by the Data API and is still copying rows ${Math.round((follow.now() - cutOffAt) / 1000)} s later, when this step's time is up; it goes on in Aurora (pg_stat_activity shows it as /* ${marker} */), holding its locks until it commits or rolls back. Use strategy "rename" for a table this large, or look it up before running again.`,
      );
    }
    await follow.sleep(
      Math.min(follow.pollIntervalMs, Math.max(0, follow.deadline - follow.now())),
    );
  }
  const [recorded] = await db.query<{ result: string }>(
    `SELECT s.result::text AS result FROM ${ADMIN_SCHEMA}.swaps s
     WHERE s.run_id = :runId AND s.swapped_at >= :since::timestamptz
     ORDER BY s.swapped_at DESC LIMIT 1`,
    { runId: plan.runId, since },
  );
  if (recorded) {
    const { alreadySwapped: _ignored, ...result } = JSON.parse(recorded.result) as SwapResult & {
      alreadySwapped?: boolean;
    };
    return { status: 'swapped', result, alreadySwapped: false };
  }
  throw new SwapCutOffEndedError(
    `the swap of run ${plan.runId} was cut off by the Data API, went on in Aurora and then ended without committing: it rolled back and nothing changed. Aurora's log has the statement's error; run again.`,
  );
}

export interface RetiredVersion {
  readonly retiredTable: string;
  readonly runId: string;
  readonly retiredAt: string;
}

/**
 * The retired versions of a live table, newest first: by time, since on Aurora Limitless ids
 * come from a distributed sequence, ordered only within a session (see schema/admin.ts).
 */
export async function retiredVersions(
  db: SqlClient,
  live: QualifiedName,
): Promise<RetiredVersion[]> {
  return db.query<
    { retiredTable: string; runId: string; retiredAt: string } & Record<string, unknown>
  >(
    `SELECT retired_table::text AS "retiredTable", run_id AS "runId", retired_at::text AS "retiredAt"
     FROM ${ADMIN_SCHEMA}.retired_versions
     WHERE live_schema = :schema AND live_table = :name
     ORDER BY retired_at DESC, id DESC`,
    { schema: live.schema, name: live.name },
  );
}

/**
 * Readies the newest retired version of a live table to be swapped back into place: the same
 * preflight and index/statistics preparation as any staging table, done once. Returns the plan
 * to hand to the lock gate (`swapWhenSafe`), which waits and retries as for any swap; the
 * version it replaces is retired in turn, so a rollback can be rolled back.
 */
export async function prepareRollback(
  db: SqlClient,
  live: QualifiedName,
  options: {
    readonly runId: string;
    readonly lockTimeoutMs?: number;
    readonly onMaxWait?: OnMaxWaitSetting;
  },
): Promise<SwapPlan> {
  const [newest] = await retiredVersions(db, live);
  if (!newest) {
    throw new ConfigError(
      `${displayQualified(live)} has no retired version to roll back to; only tables swapped with strategy "rename" keep one.`,
    );
  }
  // A partition goes back into place as a changed partition of its table (../partitions).
  const parent = await parentOf(db, live);
  if (parent) {
    await preflight(db, [{ live: parent, staging: parent, strategy: 'rename' }], {
      onMaxWait: options.onMaxWait,
    });
    return preparePartitionRollback(db, live, parent, newest.retiredTable, options);
  }
  const table: TableSwap = {
    live,
    staging: { schema: RETIRED_SCHEMA, name: newest.retiredTable },
    strategy: 'rename',
  };
  await preflight(db, [table], { withStaging: true, onMaxWait: options.onMaxWait });
  await prepareStaging(db, table);
  return buildSwapPlan([table], options);
}

/** One attempt at a rollback, with no waiting: for callers that hold the table quiet themselves. */
export async function rollback(
  db: SqlClient,
  live: QualifiedName,
  options: { readonly runId: string; readonly lockTimeoutMs?: number },
): Promise<SwapAttempt> {
  return attemptSwap(db, await prepareRollback(db, live, options));
}

export interface ExpiredVersionsResult {
  readonly dropped: string[];
  /** Versions whose drop could not get its lock in time: tried again next run. */
  readonly leftForLater: string[];
  /** Versions kept because something users made still depends on them, with what does. */
  readonly blockedByDependents: { readonly retiredTable: string; readonly dependents: string[] }[];
}

/**
 * Drops the retired versions of a live table beyond the newest `keep`. Each drop waits at most
 * lockTimeoutMs; one that cannot get its lock is left for the next run. One that something
 * still depends on (a view or function a user made on it since) is never dropped with it:
 * DROP without CASCADE refuses with 2BP01, and the version is kept and reported with its
 * dependents, for a person to decide.
 */
export async function dropExpiredVersions(
  db: SqlClient,
  live: QualifiedName,
  options: { readonly keep: number; readonly lockTimeoutMs?: number },
): Promise<ExpiredVersionsResult> {
  if (!Number.isInteger(options.keep) || options.keep < 0) {
    throw new InternalError(
      `keepVersions is ${options.keep}; it must be a whole number, 0 or more.`,
    );
  }
  const lockTimeoutMs = validateLockTimeoutMs(options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  const expired = (await retiredVersions(db, live)).slice(options.keep);
  const dropped: string[] = [];
  const leftForLater: string[] = [];
  const blockedByDependents: ExpiredVersionsResult['blockedByDependents'] = [];
  for (const version of expired) {
    try {
      await db.query(`SELECT ${ADMIN_SCHEMA}.drop_retired_version(:table, :lockTimeoutMs)`, {
        table: version.retiredTable,
        lockTimeoutMs,
      });
      dropped.push(version.retiredTable);
    } catch (error) {
      if (error instanceof DatabaseError && error.sqlState === '2BP01') {
        blockedByDependents.push({
          retiredTable: version.retiredTable,
          dependents: await retiredVersionDependents(db, version.retiredTable),
        });
        continue;
      }
      if (!busyReason(error)) throw error;
      leftForLater.push(version.retiredTable);
    }
  }
  return { dropped, leftForLater, blockedByDependents };
}

/** What keeps DROP TABLE from dropping a retired version: all but what goes with the table. */
async function retiredVersionDependents(db: SqlClient, retiredTable: string): Promise<string[]> {
  const rows = await db.query<{ object: string }>(
    `SELECT DISTINCT d.object FROM ${ADMIN_SCHEMA}.dependents(
       format('%I.%I', :schema::text, :name::text)::regclass) d
     WHERE d.kind NOT IN ('policy', 'owned sequence', 'identity column', 'publication',
                          'unlogged table', 'tablespace')
     ORDER BY d.object`,
    { schema: RETIRED_SCHEMA, name: retiredTable },
  );
  return rows.map((row) => row.object);
}
