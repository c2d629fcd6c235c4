/**
 * The swap engine: install, preflight, prepare staging, swap, roll back, expire old versions.
 * Everything goes through a SqlClient, one statement per call, so the same code runs in
 * Lambda over the RDS Data API, locally over node-postgres, and in tests.
 */
import { ConfigError, PreflightError } from '../errors';
import { displayQualified, type QualifiedName } from '../identifiers';
import { ADMIN_SCHEMA, ADMIN_SCHEMA_SQL, RETIRED_SCHEMA } from '../schema/admin';
import { PUBLISH_CHECKS_SQL } from '../schema/publish-checks';
import { PUBLISH_BY_MERGE_SQL } from '../schema/publish-merge';
import { PUBLISH_BY_TRUNCATE_SQL } from '../schema/publish-truncate';
import { RENAME_SQL } from '../schema/rename';
import { SWAP_FUNCTION_SQL } from '../schema/swap';
import type { SqlClient } from '../sql-client';
import { asPreflightError, type BusyReason, busyReason } from './errors';
import {
  analyzeStaging,
  buildStagingIndex,
  type LongStatementOptions,
  startWaitBudget,
} from './long-statements';
import { buildSwapPlan, type SwapPlan, validateLockTimeoutMs } from './plan';
import type { OnMaxWait } from './policy';
import type { SwapStrategy, TableSwap } from './types';

/** Creates or updates the pipeline's schemas, control table and functions. Idempotent. */
export async function installSchema(db: SqlClient): Promise<void> {
  for (const statement of [
    ...ADMIN_SCHEMA_SQL,
    ...RENAME_SQL,
    PUBLISH_CHECKS_SQL,
    PUBLISH_BY_TRUNCATE_SQL,
    PUBLISH_BY_MERGE_SQL,
    ...SWAP_FUNCTION_SQL,
  ]) {
    await db.query(statement);
  }
}

/** What the rename strategy cannot carry over, and what to do instead. */
const RENAME_ADVICE: Readonly<Record<string, string>> = {
  'materialized view':
    'use strategy "truncate" or "merge", which keep the table itself (then REFRESH the materialized view), or drop the materialized view',
  'referencing foreign key':
    'use strategy "merge" (rows still referenced must stay in the source), or drop the foreign key',
  'foreign key':
    'use strategy "truncate" or "merge", which keep the constraint, or drop the foreign key',
  rule: 'use strategy "truncate" or "merge", which keep the rule, or drop the rule',
  trigger: 'use strategy "truncate" or "merge", which keep the trigger, or drop the trigger',
  'function using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'table using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'identity column':
    'use strategy "truncate" or "merge", which keep the identity sequence, or make the column a plain one',
  'extended statistics': 'use strategy "truncate" or "merge", or drop the statistics object',
  publication: 'use strategy "truncate" or "merge", which keep the table in its publication',
  'partitioned table': 'use strategy "truncate" or "merge"',
  'inheritance parent': 'use strategy "truncate" or "merge"',
  'inheriting table': 'use strategy "truncate" or "merge"',
};

export interface PreflightOptions {
  /** Check the staging tables too (their columns against what depends on live). */
  readonly withStaging?: boolean;
  /** With 'terminate', the pipeline's role must be allowed to end other sessions. */
  readonly onMaxWait?: OnMaxWait;
}

/**
 * Finds, before any data moves, what would make a swap fail or lose something users built,
 * and throws a PreflightError that names each problem and a strategy that works.
 */
export async function preflight(
  db: SqlClient,
  tables: readonly TableSwap[],
  options: PreflightOptions = {},
): Promise<void> {
  const problems: string[] = [];
  const [role] = await db.query<{ name: string; seesAll: boolean; canSignal: boolean }>(
    `SELECT current_user AS name,
            pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS "seesAll",
            pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS "canSignal"`,
  );
  if (!role!.seesAll) {
    problems.push(
      `the pipeline's database role ${role!.name} cannot see how long other sessions have held their locks, so every reader would look like a long blocker; run GRANT pg_read_all_stats TO ${role!.name}.`,
    );
  }
  if (options.onMaxWait === 'terminate' && !role!.canSignal) {
    problems.push(
      `onMaxWait is "terminate", but the pipeline's database role ${role!.name} may not end other sessions; run GRANT pg_signal_backend TO ${role!.name}, or set onMaxWait to "fail".`,
    );
  }
  for (const table of tables) {
    const live = displayQualified(table.live);
    const liveParameters = { schema: table.live.schema, name: table.live.name };
    const [exists] = await db.query<{ exists: boolean }>(
      `SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) IS NOT NULL AS exists`,
      liveParameters,
    );
    if (!exists?.exists) continue; // a first publication: nothing is there to lose
    if (table.strategy === 'rename') {
      const dependents = await db.query<{ kind: string; object: string }>(
        `SELECT kind, object FROM ${ADMIN_SCHEMA}.dependents(format('%I.%I', :schema::text, :name::text)::regclass)
         WHERE NOT carried`,
        liveParameters,
      );
      for (const dependent of dependents) {
        problems.push(
          `${live}: ${dependent.object} (${dependent.kind}) cannot be carried over by strategy "rename"; ${RENAME_ADVICE[dependent.kind] ?? 'use strategy "truncate" or "merge"'}.`,
        );
      }
      const roles = await db.query<{ role: string; why: string }>(
        `SELECT DISTINCT role, why FROM (
           SELECT pg_get_userbyid(c.relowner) AS role, 'owns the table' AS why
           FROM pg_class c WHERE c.oid = format('%I.%I', :schema::text, :name::text)::regclass
           UNION ALL
           SELECT pg_get_userbyid(v.relowner), 'owns view ' || v.oid::regclass::text
           FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
           WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
             AND d.refobjid = format('%I.%I', :schema::text, :name::text)::regclass AND v.relkind = 'v'
           UNION ALL
           SELECT p.grantor, 'granted ' || p.privilege || ' to ' || p.grantee
           FROM ${ADMIN_SCHEMA}.privileges(format('%I.%I', :schema::text, :name::text)::regclass) p
         ) needed
         -- Before PostgreSQL 16 every member may SET ROLE; 16 added the SET option to
         -- memberships (and the 'SET' privilege type, unknown to 14 and 15).
         WHERE NOT pg_has_role(current_user, role, 'USAGE')
            OR (current_setting('server_version_num')::int >= 160000
                AND NOT pg_has_role(current_user, role, 'SET'))`,
        liveParameters,
      );
      for (const role of roles) {
        problems.push(
          `${live}: the pipeline's database role must act as role ${role.role} (which ${role.why}) to carry it over; run GRANT ${role.role} TO <pipeline role>.`,
        );
      }
      if (options.withStaging) {
        const mismatches = await db.query<{
          dependent: string;
          column_name: string;
          problem: string;
        }>(
          `SELECT dependent, column_name, problem FROM ${ADMIN_SCHEMA}.staging_mismatches(
             format('%I.%I', :schema::text, :name::text)::regclass,
             format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass)`,
          {
            ...liveParameters,
            stagingSchema: table.staging.schema,
            stagingName: table.staging.name,
          },
        );
        for (const mismatch of mismatches) {
          problems.push(
            `${live}: ${mismatch.dependent} uses column ${mismatch.column_name}, which ${mismatch.problem}; it would no longer compile. Change the view, or keep the column in the source.`,
          );
        }
      }
    }
    if (table.strategy === 'truncate') {
      const references = await db.query<{ constraint: string }>(
        `SELECT format('%s on %s', quote_ident(conname), conrelid::regclass) AS constraint
         FROM pg_constraint
         WHERE contype = 'f' AND confrelid = format('%I.%I', :schema::text, :name::text)::regclass
           AND conrelid <> confrelid`,
        liveParameters,
      );
      for (const reference of references) {
        problems.push(
          `${live}: foreign key ${reference.constraint} references it, so TRUNCATE would fail; use strategy "merge", or drop the foreign key.`,
        );
      }
    }
  }
  if (problems.length > 0) {
    throw new PreflightError(
      `The swap cannot be done safely; nothing was changed:\n- ${problems.join('\n- ')}`,
      problems,
    );
  }
}

/**
 * Gives a staging table exactly the live table's indexes (built before the swap, so the
 * exclusive part stays short) and fresh statistics. Each statement is its own call. Index
 * builds and ANALYZE are sent as long-running: when the transport cuts such a call off (the
 * RDS Data API after 45 s), the statement goes on in the database and is followed there until
 * it ends, at most `options.maxWaitMs` after prepareStaging began (see ./long-statements.ts).
 */
export async function prepareStaging(
  db: SqlClient,
  table: Pick<TableSwap, 'live' | 'staging'>,
  options: LongStatementOptions = {},
): Promise<{ readonly statements: readonly string[] }> {
  const budget = startWaitBudget(options);
  const parameters = {
    liveSchema: table.live.schema,
    liveName: table.live.name,
    stagingSchema: table.staging.schema,
    stagingName: table.staging.name,
  };
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
}

export type SwapAttempt =
  | { readonly status: 'swapped'; readonly result: SwapResult }
  | { readonly status: 'busy'; readonly reason: BusyReason; readonly message: string };

/**
 * One attempt at the swap statement. A lock timeout or deadlock comes back as `busy`: the
 * statement rolled back, nothing changed, and the caller waits and tries again.
 */
export async function attemptSwap(db: SqlClient, plan: SwapPlan): Promise<SwapAttempt> {
  try {
    const [row] = await db.query<{ result: string }>(
      `SELECT ${ADMIN_SCHEMA}.swap(:plan::jsonb)::text AS result`,
      { plan: JSON.stringify(plan) },
    );
    return { status: 'swapped', result: JSON.parse(row!.result) as SwapResult };
  } catch (error) {
    const reason = busyReason(error);
    if (reason) return { status: 'busy', reason, message: (error as Error).message };
    throw asPreflightError(error) ?? error;
  }
}

export interface RetiredVersion {
  readonly retiredTable: string;
  readonly runId: string;
  readonly retiredAt: string;
}

/** The retired versions of a live table, newest first. */
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
     ORDER BY id DESC`,
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
    readonly onMaxWait?: OnMaxWait;
  },
): Promise<SwapPlan> {
  const [newest] = await retiredVersions(db, live);
  if (!newest) {
    throw new ConfigError(
      `${displayQualified(live)} has no retired version to roll back to; only tables swapped with strategy "rename" keep one.`,
    );
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

/**
 * Drops the retired versions of a live table beyond the newest `keep`. Each drop waits at most
 * lockTimeoutMs; one that cannot get its lock is left for the next run.
 */
export async function dropExpiredVersions(
  db: SqlClient,
  live: QualifiedName,
  options: { readonly keep: number; readonly lockTimeoutMs?: number },
): Promise<{ readonly dropped: string[]; readonly leftForLater: string[] }> {
  if (!Number.isInteger(options.keep) || options.keep < 0) {
    throw new ConfigError(`keepVersions is ${options.keep}; give a whole number, 0 or more.`);
  }
  const lockTimeoutMs = validateLockTimeoutMs(options.lockTimeoutMs ?? 200);
  const expired = (await retiredVersions(db, live)).slice(options.keep);
  const dropped: string[] = [];
  const leftForLater: string[] = [];
  for (const version of expired) {
    try {
      await db.query(`SELECT ${ADMIN_SCHEMA}.drop_retired_version(:table, :lockTimeoutMs)`, {
        table: version.retiredTable,
        lockTimeoutMs,
      });
      dropped.push(version.retiredTable);
    } catch (error) {
      if (!busyReason(error)) throw error;
      leftForLater.push(version.retiredTable);
    }
  }
  return { dropped, leftForLater };
}
