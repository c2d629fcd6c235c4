/**
 * The swap engine: install, preflight, prepare staging, swap, roll back, expire old versions.
 * Everything goes through a SqlClient, one statement per call, so the same code runs in
 * Lambda over the RDS Data API, locally over node-postgres, and in tests.
 */
import { randomUUID } from 'node:crypto';
import { ConfigError, DatabaseError, PreflightError, SyncError } from '../errors';
import { displayIdentifier, displayQualified, type QualifiedName } from '../identifiers';
import { DataApiTimeoutError } from '../load/errors';
import { ADMIN_SCHEMA, RETIRED_SCHEMA, STAGING_SCHEMA } from '../schema/admin';
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

/** Installs the pipeline's schemas, control tables and functions when their version differs. */
export { installSchema } from '../schema/install';

/** What the rename strategy cannot carry over, and what to do instead. */
const RENAME_ADVICE: Readonly<Record<string, string>> = {
  'materialized view':
    'use strategy "truncate" or "merge", which keep the table itself (then REFRESH the materialized view), or drop the materialized view',
  'referencing foreign key':
    'use strategy "merge" (rows still referenced must stay in the source), or drop the foreign key',
  'foreign key':
    'use strategy "truncate" or "merge", which keep the constraint, or drop the foreign key',
  rule: 'use strategy "truncate" or "merge", which keep the table the rule is bound to, or drop the rule',
  'policy on another table':
    'use strategy "truncate" or "merge", which keep the table the policy reads; or have the policy read it through a view, which rename re-points',
  trigger: 'use strategy "truncate" or "merge", which keep the trigger, or drop the trigger',
  'function using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'table using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'extended statistics': 'use strategy "truncate" or "merge", or drop the statistics object',
  'unlogged table':
    'use strategy "truncate" or "merge", or make the table logged (ALTER TABLE ... SET LOGGED)',
  tablespace:
    'use strategy "truncate" or "merge", or move the table and its indexes to the database\'s default tablespace (ALTER TABLE ... SET TABLESPACE pg_default)',
  'partitioned table':
    'use strategy "merge" (truncate refuses a partitioned table: TRUNCATE would empty every partition)',
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
  const [role] = await db.query<{
    name: string;
    seesAll: boolean;
    canSignal: boolean;
    serverVersion: number;
  }>(
    `SELECT current_user AS name,
            pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS "seesAll",
            pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS "canSignal",
            current_setting('server_version_num')::int AS "serverVersion"`,
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
  // FOR TABLES IN SCHEMA (PostgreSQL 15+, pg_publication_namespace) over the staging schema
  // would publish every load into staging, tables a subscriber does not have.
  if (role!.serverVersion >= 150000) {
    const publications = await db.query<{ publication: string }>(
      `SELECT quote_ident(p.pubname) AS publication
       FROM pg_publication_namespace pn
       JOIN pg_publication p ON p.oid = pn.pnpubid
       JOIN pg_namespace n ON n.oid = pn.pnnspid
       WHERE n.nspname = :schema ORDER BY p.pubname`,
      { schema: STAGING_SCHEMA },
    );
    for (const { publication } of publications) {
      problems.push(
        `publication ${publication} publishes the staging schema ${STAGING_SCHEMA} (FOR TABLES IN SCHEMA), so every load into staging would be replicated; run ALTER PUBLICATION ${publication} DROP TABLES IN SCHEMA ${STAGING_SCHEMA}.`,
      );
    }
  }
  const schemas = await schemaPrivilegeProblems(db, tables, role!.name);
  problems.push(...schemas.problems);
  for (const table of tables) {
    // Named above; looking the table up would fail with "permission denied for schema".
    if (schemas.unreachable.has(table.live.schema)) continue;
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
           SELECT pg_get_userbyid(pub.pubowner), 'owns publication ' || quote_ident(pub.pubname)
           FROM pg_publication_rel pr JOIN pg_publication pub ON pub.oid = pr.prpubid
           WHERE pr.prrelid = format('%I.%I', :schema::text, :name::text)::regclass
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
      // CREATE OR REPLACE VIEW checks CREATE on the view's schema for the role running it, as
      // CREATE VIEW does (DefineView resolves the name with
      // RangeVarGetAndCheckCreationNamespace), even though the view exists and is kept.
      const views = await db.query<{ view: string; owner: string; schema: string }>(
        `SELECT DISTINCT v.oid::regclass::text AS view, quote_ident(pg_get_userbyid(v.relowner)) AS owner,
                quote_ident(n.nspname) AS schema
         FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
         JOIN pg_namespace n ON n.oid = v.relnamespace
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = format('%I.%I', :schema::text, :name::text)::regclass
           AND v.relkind = 'v' AND r.rulename = '_RETURN'
           AND NOT has_schema_privilege(current_user, v.relnamespace, 'CREATE')
         ORDER BY 1`,
        liveParameters,
      );
      for (const view of views) {
        problems.push(
          `${live}: view ${view.view} (owner ${view.owner}) cannot be re-pointed to the new version: CREATE OR REPLACE VIEW needs CREATE on schema ${view.schema}, which neither its owner nor the pipeline's role has; run GRANT CREATE ON SCHEMA ${view.schema} TO ${view.owner}.`,
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
 * What the pipeline's role needs on each live table's schema: USAGE to reach the table at all
 * ("Access to objects in a schema requires USAGE privilege on the schema", PostgreSQL docs,
 * ddl-schemas.html#DDL-SCHEMAS-PRIV), and CREATE where the swap moves a table into it: strategy
 * "rename" and every first publication end with ALTER TABLE ... SET SCHEMA <live schema>, and
 * "To change the schema of a table, you must also have CREATE privilege on the new schema"
 * (sql-altertable.html). PostgreSQL 15 stopped granting it on schema public to everyone ("Remove
 * PUBLIC creation permission on the public schema", release-15.html, Migration to Version 15),
 * so from 15 on public needs a grant too; checking the privilege itself holds on every major.
 * Rename also hands the new version to the live table's owner, and "to alter the owner ... that
 * role must have CREATE privilege on the table's schema" (sql-altertable.html); and it re-points
 * views with CREATE OR REPLACE VIEW, which checks CREATE on the view's schema even when
 * replacing. Read from the catalogs, which need no privilege on the schema.
 */
async function schemaPrivilegeProblems(
  db: SqlClient,
  tables: readonly TableSwap[],
  roleName: string,
): Promise<{ problems: string[]; unreachable: Set<string> }> {
  const role = displayIdentifier(roleName);
  const problems: string[] = [];
  const bySchema = new Map<
    string,
    { exists: boolean; usage: boolean; create: boolean; needCreate: string[] }
  >();
  for (const table of tables) {
    const [facts] = await db.query<{
      schemaExists: boolean;
      usage: boolean;
      create: boolean;
      liveExists: boolean;
      ownerWithoutCreate: string | null;
    }>(
      `SELECT n.oid IS NOT NULL AS "schemaExists",
              coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
              coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS "create",
              l.oid IS NOT NULL AS "liveExists",
              CASE WHEN NOT has_schema_privilege(l.relowner, n.oid, 'CREATE')
                   THEN pg_get_userbyid(l.relowner)::text END AS "ownerWithoutCreate"
       FROM (SELECT :schema::text AS wanted) w
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.wanted
       LEFT JOIN pg_catalog.pg_class l ON l.relnamespace = n.oid AND l.relname = :name::text`,
      { schema: table.live.schema, name: table.live.name },
    );
    const schema = bySchema.get(table.live.schema) ?? {
      exists: facts!.schemaExists,
      usage: facts!.usage,
      create: facts!.create,
      needCreate: [],
    };
    if (table.strategy === 'rename' || !facts!.liveExists) {
      schema.needCreate.push(displayQualified(table.live));
    }
    const live = displayQualified(table.live);
    if (table.strategy === 'rename' && facts!.ownerWithoutCreate !== null) {
      const owner = displayIdentifier(facts!.ownerWithoutCreate);
      problems.push(
        `${live}: its owner ${owner} has no CREATE on schema ${displayIdentifier(table.live.schema)}, which handing the new version to it (ALTER TABLE ... OWNER TO) needs; run GRANT CREATE ON SCHEMA ${displayIdentifier(table.live.schema)} TO ${owner}.`,
      );
    }
    bySchema.set(table.live.schema, schema);
  }
  const unreachable = new Set<string>();
  for (const [name, schema] of bySchema) {
    const shown = displayIdentifier(name);
    if (!schema.exists) {
      problems.push(
        `schema ${shown} does not exist, so ${schema.needCreate.join(', ')} cannot be published there; create it (CREATE SCHEMA ${shown}, then GRANT USAGE, CREATE ON SCHEMA ${shown} TO ${role}) or correct the target's name.`,
      );
      continue;
    }
    if (!schema.usage) {
      unreachable.add(name);
      problems.push(
        `the pipeline's database role ${role} has no USAGE on schema ${shown}, so it cannot reach the live tables there; run GRANT USAGE ON SCHEMA ${shown} TO ${role}.`,
      );
    }
    if (!schema.create && schema.needCreate.length > 0) {
      problems.push(
        `the pipeline's database role ${role} has no CREATE on schema ${shown}, which publishing ${schema.needCreate.join(', ')} needs (strategy "rename", and a first run of any strategy, move the new table into the schema); run GRANT CREATE ON SCHEMA ${shown} TO ${role}.`,
      );
    }
  }
  return { problems, unreachable };
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
  const copies = follow !== undefined && plan.tables.some((table) => table.strategy !== 'rename');
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
    throw new ConfigError(`keepVersions is ${options.keep}; give a whole number, 0 or more.`);
  }
  const lockTimeoutMs = validateLockTimeoutMs(options.lockTimeoutMs ?? 200);
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
