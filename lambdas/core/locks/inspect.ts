/**
 * Who holds, or waits for, a lock on the relations a swap is about to lock: one query over
 * pg_locks, pg_stat_activity and pg_prepared_xacts, so the answer is one consistent picture
 * and runs over the RDS Data API (one statement, scalar parameters) as it does over pg. On an
 * Aurora Limitless cluster the same question is asked of its cluster-wide views (limitless.ts).
 */
import * as z from 'zod';
import type { QualifiedName } from '../identifiers';
import type { SqlClient } from '../sql-client';
import type { LockMode } from '../swap/types';
import { isLockMode, LOCK_MODES } from './conflicts';
import { detectLockViews, INSPECT_LIMITLESS_LOCKS_SQL, type LockViews } from './limitless';
import { LOCK_TARGET_CTES, SESSION_STATE_CASES, WRAPAROUND_AUTOVACUUM } from './targets-sql';

export interface LockTarget {
  readonly relation: QualifiedName;
  /** The mode the swap will take on the relation. */
  readonly mode: LockMode;
  /** Also check the views and materialized views that select directly from the relation, in the same mode. */
  readonly includeDependentViews: boolean;
  /** Also check the sequences its columns own (serial or identity), in the same mode. */
  readonly includeOwnedSequences?: boolean;
}

/**
 * What a session is doing, from pg_stat_activity.state and backend_type:
 * `prepared` is a prepared transaction (no session, survives restarts), `autovacuum` an
 * autovacuum worker, `other` anything else (a parallel worker's leader state, `fastpath
 * function call`, `disabled`, a session that just finished).
 */
export type SessionState =
  | 'active'
  | 'idle in transaction'
  | 'idle in transaction (aborted)'
  | 'prepared'
  | 'autovacuum'
  | 'other';

const SESSION_STATES: readonly SessionState[] = [
  'active',
  'idle in transaction',
  'idle in transaction (aborted)',
  'prepared',
  'autovacuum',
  'other',
];

/** One lock on one target relation held (granted) or waited for (not granted) by one session. */
export interface LockHolder {
  /** Null for a prepared transaction, which has no backend. */
  readonly pid: number | null;
  /** The session's role; the owner for a prepared transaction; null for autovacuum. */
  readonly user: string | null;
  readonly applicationName: string | null;
  /** The client's IP address; null for a Unix socket, a background process or a prepared transaction. */
  readonly clientAddr: string | null;
  readonly state: SessionState;
  /** An autovacuum run to prevent transaction ID wraparound: it does not give way to other locks. */
  readonly autovacuumWraparound: boolean;
  /** pg_stat_activity.backend_type (`client backend`, `walsender`, ...); null for a prepared transaction. */
  readonly backendType: string | null;
  /**
   * The maintenance command a progress view reports for the session (`CREATE INDEX`, `REINDEX`,
   * `CLUSTER`, `VACUUM FULL`, `VACUUM`, `ANALYZE`...), null when it runs none. See blockerClass.
   */
  readonly maintenanceCommand: string | null;
  /** The global identifier of a prepared transaction (for COMMIT/ROLLBACK PREPARED); null otherwise. */
  readonly gid: string | null;
  readonly relation: QualifiedName;
  /** The mode the swap needs on this relation. */
  readonly targetMode: LockMode;
  /** The mode held, or requested when not granted. */
  readonly mode: LockMode;
  readonly granted: boolean;
  /** Seconds since the transaction started (since PREPARE TRANSACTION for a prepared one). */
  readonly transactionAgeSeconds: number | null;
  /** Seconds since the current, or for an idle session the last, query started. */
  readonly queryAgeSeconds: number | null;
  /**
   * The transaction's start as microseconds since the Unix epoch, in decimal: identifies the
   * transaction together with the pid, so that a pid reused by a later session is told apart.
   */
  readonly transactionStartMicros: string | null;
  readonly waitEventType: string | null;
  /**
   * pg_blocking_pids of the session: whom it waits for (on any lock). A prepared transaction
   * among them appears as 0.
   */
  readonly blockingPids: readonly number[];
  /** The current or last query, at most 500 characters. */
  readonly query: string | null;
  /**
   * The session logged in as the role running the inspection (pg_stat_activity.usename =
   * session_user): one of the pipeline's own sessions. The role, not application_name, tells
   * them apart because over the RDS Data API the client cannot set application_name, and the
   * pipeline's statements are not all marked; the README asks for a role of the pipeline's
   * own, so its sessions are the pipeline's (or someone borrowing its login, who then is not
   * terminated either). Their locks are still waited for: our own statement still running
   * (an index build on staging, a statement a cut-off Data API call left going) has to finish
   * before the swap can lock.
   */
  readonly ownSession: boolean;
  /**
   * Parallel workers of this session holding the same lock, reported under their leader's pid
   * rather than as holders of their own (0 for a session running no parallel query).
   */
  readonly parallelWorkers: number;
  /** On an Aurora Limitless cluster, where the session runs; absent on PostgreSQL. */
  readonly subcluster?: Subcluster;
}

/** A node of an Aurora Limitless cluster, as rds_aurora.limitless_stat_activity names it. */
export const subcluster = z.object({
  /** subcluster_id of the session's process (its distributed session's coordinator). */
  id: z.string(),
  /** `router` or `shard`; null when the process has just ended. */
  type: z.string().nullable(),
  /** Every subcluster where the session holds (or waits for) this lock, ids in order. */
  lockedOn: z.array(z.string()).readonly(),
});
export type Subcluster = z.infer<typeof subcluster>;

/**
 * `:targets` is a JSON array of
 * `{schema, name, mode, include_dependent_views, include_owned_sequences}`. Every output
 * column is cast to int, float8, text or boolean, which both transports return the same way.
 */
export const INSPECT_LOCKS_SQL = `
WITH ${LOCK_TARGET_CTES},
-- pg_locks read once, so that relation locks and the transaction locks that tie prepared
-- transactions to them come from the same snapshot.
lock_rows AS MATERIALIZED (
  SELECT l.locktype, l.relation, l.transactionid, l.virtualtransaction, l.pid, l.mode,
         l.granted
  FROM pg_locks l
  WHERE (l.locktype = 'relation'
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.pid IS DISTINCT FROM pg_backend_pid())
     OR (l.locktype = 'transactionid' AND l.pid IS NULL)
),
-- The sessions running a maintenance command, read once: the progress views name it
-- (https://www.postgresql.org/docs/current/progress-reporting.html). The pid is shown for every
-- session; the command needs pg_read_all_stats (which the pipeline's role has), else it is
-- 'maintenance'.
progress AS MATERIALIZED (
  SELECT pid, coalesce(command::text, 'maintenance') AS command FROM pg_stat_progress_create_index
  UNION ALL
  SELECT pid, coalesce(command::text, 'maintenance') FROM pg_stat_progress_cluster
  UNION ALL
  SELECT pid, 'VACUUM' FROM pg_stat_progress_vacuum
  UNION ALL
  SELECT pid, 'ANALYZE' FROM pg_stat_progress_analyze
),
-- A parallel worker holds the same locks as its leader (group locking) and ends with it: its
-- rows are reported under the leader's pid, so one parallel query is one holder, and ending
-- the leader ends its workers. pg_stat_activity.leader_pid exists from PostgreSQL 13
-- (https://www.postgresql.org/docs/current/monitoring-stats.html#MONITORING-PG-STAT-ACTIVITY-VIEW).
held AS (
  SELECT coalesce(w.leader_pid, l.pid) AS pid, l.relation, l.mode, l.granted,
         CASE WHEN l.pid IS NULL THEN l.virtualtransaction END AS virtualtransaction,
         t.rank AS target_rank,
         count(DISTINCT w.pid) AS parallel_workers
  FROM lock_rows l
  JOIN target t ON t.relid = l.relation
  CROSS JOIN mode_list m
  LEFT JOIN pg_stat_activity w
    ON w.pid = l.pid AND w.leader_pid IS NOT NULL AND w.leader_pid <> w.pid
  WHERE l.locktype = 'relation' AND l.mode = ANY (m.modes)
    AND coalesce(w.leader_pid, l.pid) IS DISTINCT FROM pg_backend_pid()
  GROUP BY 1, 2, 3, 4, 5, 6
)
SELECT
  h.pid::int AS pid,
  coalesce(a.usename, px.owner)::text AS user_name,
  a.application_name::text AS application_name,
  host(a.client_addr)::text AS client_addr,
  CASE
    WHEN h.pid IS NULL AND px.gid IS NOT NULL THEN 'prepared'
    ${SESSION_STATE_CASES}
  END::text AS state,
  ${WRAPAROUND_AUTOVACUUM} AS autovacuum_wraparound,
  a.backend_type::text AS backend_type,
  mc.command::text AS maintenance_command,
  px.gid::text AS gid,
  n.nspname::text AS relation_schema,
  c.relname::text AS relation_name,
  m.modes[h.target_rank]::text AS target_mode,
  h.mode::text AS mode,
  h.granted::boolean AS granted,
  extract(epoch FROM statement_timestamp() - coalesce(a.xact_start, px.prepared))::float8
    AS transaction_age_seconds,
  extract(epoch FROM statement_timestamp() - coalesce(a.query_start, px.prepared))::float8
    AS query_age_seconds,
  (extract(epoch FROM coalesce(a.xact_start, px.prepared)) * 1000000)::bigint::text
    AS transaction_start_micros,
  a.wait_event_type::text AS wait_event_type,
  coalesce(array_to_string(pg_blocking_pids(h.pid), ','), '')::text AS blocking_pids,
  left(a.query, 500)::text AS query,
  -- pg_stat_activity.usename is the role the session logged in as, so session_user, not
  -- current_user (which SET ROLE changes), is the one to compare with.
  coalesce(a.usename = session_user, false)::boolean AS own_session,
  h.parallel_workers::int AS parallel_workers
FROM held h
CROSS JOIN mode_list m
JOIN pg_class c ON c.oid = h.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = h.pid
LEFT JOIN LATERAL (
  SELECT p.gid, p.owner, p.prepared
  FROM lock_rows x
  JOIN pg_prepared_xacts p ON p.transaction = x.transactionid
  WHERE h.pid IS NULL
    AND x.locktype = 'transactionid'
    AND x.virtualtransaction = h.virtualtransaction
  LIMIT 1
) px ON true
LEFT JOIN LATERAL (
  SELECT p.command FROM progress p WHERE p.pid = h.pid LIMIT 1
) mc ON true
ORDER BY n.nspname, c.relname, h.granted DESC, transaction_age_seconds DESC NULLS FIRST, h.pid
`;

interface LockHolderRow {
  [column: string]: unknown;
  pid: number | null;
  user_name: string | null;
  application_name: string | null;
  client_addr: string | null;
  state: string;
  autovacuum_wraparound: boolean;
  backend_type: string | null;
  maintenance_command: string | null;
  gid: string | null;
  relation_schema: string;
  relation_name: string;
  target_mode: string;
  mode: string;
  granted: boolean;
  transaction_age_seconds: number | null;
  query_age_seconds: number | null;
  transaction_start_micros: string | null;
  wait_event_type: string | null;
  blocking_pids: string;
  query: string | null;
  own_session: boolean;
  parallel_workers: number;
  /** Only from INSPECT_LIMITLESS_LOCKS_SQL. */
  subcluster_id?: string | null;
  subcluster_type?: string | null;
  lock_subclusters?: string | null;
}

/**
 * Every session other than ours that holds or waits for a lock on one of the targets (or, when
 * asked, on a view depending directly on one, or a sequence one owns), one entry per session,
 * relation, mode and granted. Targets that do not exist are skipped. Passes no judgement: see `lockVerdict`.
 */
export async function inspectLocks(
  db: SqlClient,
  targets: readonly LockTarget[],
  /** Which views to read (detectLockViews); asked of the database when not given. */
  views?: LockViews,
): Promise<LockHolder[]> {
  for (const target of targets) {
    if (!isLockMode(target.mode)) {
      throw new Error(`inspectLocks: ${JSON.stringify(target.mode)} is not a table lock mode`);
    }
  }
  if (targets.length === 0) return [];
  const limitless = (views ?? (await detectLockViews(db))) === 'limitless';
  const sql = limitless ? INSPECT_LIMITLESS_LOCKS_SQL : INSPECT_LOCKS_SQL;
  const rows = await db.query<LockHolderRow>(sql, {
    targets: JSON.stringify(
      targets.map((target) => ({
        schema: target.relation.schema,
        name: target.relation.name,
        mode: target.mode,
        include_dependent_views: target.includeDependentViews,
        include_owned_sequences: target.includeOwnedSequences ?? false,
      })),
    ),
  });
  return rows.map(toLockHolder);
}

function toLockHolder(row: LockHolderRow): LockHolder {
  const subcluster: Subcluster | undefined =
    row.subcluster_id === undefined || row.subcluster_id === null
      ? undefined
      : {
          id: row.subcluster_id,
          type: row.subcluster_type ?? null,
          lockedOn: row.lock_subclusters ? row.lock_subclusters.split(',') : [row.subcluster_id],
        };
  return {
    pid: row.pid,
    user: row.user_name,
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    state: oneOf(row.state, SESSION_STATES, 'state'),
    autovacuumWraparound: row.autovacuum_wraparound,
    backendType: row.backend_type,
    maintenanceCommand: row.maintenance_command,
    gid: row.gid,
    relation: { schema: row.relation_schema, name: row.relation_name },
    targetMode: oneOf(row.target_mode, LOCK_MODES, 'target_mode'),
    mode: oneOf(row.mode, LOCK_MODES, 'mode'),
    granted: row.granted,
    transactionAgeSeconds: row.transaction_age_seconds,
    queryAgeSeconds: row.query_age_seconds,
    transactionStartMicros: row.transaction_start_micros,
    waitEventType: row.wait_event_type,
    blockingPids: row.blocking_pids === '' ? [] : row.blocking_pids.split(',').map(Number),
    query: row.query,
    ownSession: row.own_session,
    parallelWorkers: row.parallel_workers,
    ...(subcluster ? { subcluster } : {}),
  };
}

function oneOf<T extends string>(value: string, allowed: readonly T[], column: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new Error(
      `inspectLocks: unexpected ${column} ${JSON.stringify(value)} from the lock query`,
    );
  }
  return value as T;
}
