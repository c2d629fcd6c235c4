/**
 * Whom the pipeline's own swap attempt is waiting for, asked while it waits: pg_blocking_pids
 * over the sessions of the pipeline's role that lock a target. It sees what pg_locks alone
 * cannot tie to us (a merge waiting on a row lock) and names whom a busy attempt was stuck
 * behind.
 */
import type { SqlClient } from '../sql-client';
import type { LockTarget, Subcluster } from './inspect';
import { detectLockViews, type LockViews, SESSIONS_BLOCKING_LIMITLESS_SQL } from './limitless';

/** A session that one of the pipeline's own sessions is waiting for, on any lock. */
export interface BlockingSession {
  /** Our session that waits: it holds or waits for a lock on a target. */
  readonly blockedPid: number;
  /** The parallel group leader when a worker blocks; null for a prepared transaction. */
  readonly pid: number | null;
  readonly user: string | null;
  readonly applicationName: string | null;
  readonly clientAddr: string | null;
  /** pg_stat_activity.state; 'prepared' for a prepared transaction. */
  readonly state: string | null;
  readonly transactionAgeSeconds: number | null;
  readonly queryAgeSeconds: number | null;
  /** As LockHolder.transactionStartMicros. */
  readonly transactionStartMicros: string | null;
  readonly query: string | null;
  /** On Aurora Limitless, the node of the blocking session (lockedOn: that node). */
  readonly subcluster?: Subcluster;
}

/**
 * `:targets` as for INSPECT_LOCKS_SQL (mode and include_dependent_views are not needed). Our
 * sessions are those of the role running this query (session_user), other than this one.
 * pg_blocking_pids names the holders of the lock a session waits for, whatever its kind:
 * a row lock shows up as a wait for the holder's transaction ID, which no relation lock shows
 * (https://www.postgresql.org/docs/current/functions-info.html, pg_blocking_pids). A
 * prepared transaction appears there as 0.
 */
export const SESSIONS_BLOCKING_SQL = `
WITH wanted AS (
  SELECT to_regclass(format('%I.%I', t.schema, t.name))::oid AS relid
  FROM jsonb_to_recordset(:targets::jsonb) AS t(schema text, name text)
),
ours AS (
  SELECT DISTINCT a.pid
  FROM pg_stat_activity a
  JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'relation'
  JOIN wanted w ON w.relid = l.relation
  WHERE a.usename = session_user
    AND a.pid <> pg_backend_pid()
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
blocking AS (
  SELECT DISTINCT o.pid AS blocked_pid,
         CASE WHEN b.pid = 0 THEN NULL ELSE coalesce(w.leader_pid, b.pid) END AS pid
  FROM ours o
  CROSS JOIN LATERAL unnest(pg_blocking_pids(o.pid)) AS b(pid)
  LEFT JOIN pg_stat_activity w
    ON w.pid = b.pid AND w.leader_pid IS NOT NULL AND w.leader_pid <> w.pid
)
SELECT b.blocked_pid::int AS blocked_pid,
       b.pid::int AS pid,
       a.usename::text AS user_name,
       a.application_name::text AS application_name,
       host(a.client_addr)::text AS client_addr,
       CASE WHEN b.pid IS NULL THEN 'prepared' ELSE a.state END::text AS state,
       extract(epoch FROM statement_timestamp() - a.xact_start)::float8 AS transaction_age_seconds,
       extract(epoch FROM statement_timestamp() - a.query_start)::float8 AS query_age_seconds,
       (extract(epoch FROM a.xact_start) * 1000000)::bigint::text AS transaction_start_micros,
       left(a.query, 500)::text AS query
FROM blocking b
LEFT JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY b.blocked_pid, b.pid NULLS FIRST
`;

interface BlockingSessionRow {
  [column: string]: unknown;
  blocked_pid: number;
  pid: number | null;
  user_name: string | null;
  application_name: string | null;
  client_addr: string | null;
  state: string | null;
  transaction_age_seconds: number | null;
  query_age_seconds: number | null;
  transaction_start_micros: string | null;
  query: string | null;
  /** Only from SESSIONS_BLOCKING_LIMITLESS_SQL. */
  subcluster_id?: string | null;
  subcluster_type?: string | null;
}

/**
 * Whom the pipeline's own sessions that lock a target are waiting for right now: the sessions
 * a swap attempt is stuck behind, named while it waits. Intended use, by the gate: start it
 * from another connection (or a concurrent Data API call) while an attempt waits under its
 * lock_timeout, e.g. half-way through it; once the attempt has timed out nobody waits any more
 * and this finds nothing. It names what `inspectLocks` cannot see, a merge waiting for a row
 * lock, and short-lived holders it judged too young; the gate counts them as sessions a busy
 * attempt collided with (recordBusyAttempt in ../swap/gate-decision.ts).
 */
export async function sessionsBlocking(
  db: SqlClient,
  targets: readonly Pick<LockTarget, 'relation'>[],
  /** Which views to read (detectLockViews); asked of the database when not given. */
  views?: LockViews,
): Promise<BlockingSession[]> {
  if (targets.length === 0) return [];
  const limitless = (views ?? (await detectLockViews(db))) === 'limitless';
  const sql = limitless ? SESSIONS_BLOCKING_LIMITLESS_SQL : SESSIONS_BLOCKING_SQL;
  const rows = await db.query<BlockingSessionRow>(sql, {
    targets: JSON.stringify(
      targets.map(({ relation }) => ({ schema: relation.schema, name: relation.name })),
    ),
  });
  return rows.map((row) => ({
    blockedPid: row.blocked_pid,
    pid: row.pid,
    user: row.user_name,
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    state: row.state,
    transactionAgeSeconds: row.transaction_age_seconds,
    queryAgeSeconds: row.query_age_seconds,
    transactionStartMicros: row.transaction_start_micros,
    query: row.query,
    ...(row.subcluster_id
      ? {
          subcluster: {
            id: row.subcluster_id,
            type: row.subcluster_type ?? null,
            lockedOn: [row.subcluster_id],
          },
        }
      : {}),
  }));
}
