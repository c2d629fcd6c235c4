/**
 * The lock check on an Aurora PostgreSQL Limitless Database cluster. There, locks and sessions
 * are spread over routers and shards, and pg_locks / pg_stat_activity on the router the
 * connection lands on show only that router's. AWS documents cluster-wide counterparts in
 * schema rds_aurora, one row per process per node, each naming its node (`subcluster_id`,
 * `subcluster_type` router or shard) and the distributed session the process belongs to
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-monitoring-views.html):
 * `limitless_locks` (pg_locks, with the database and relation by name: OIDs differ from node
 * to node) and `limitless_stat_activity` (pg_stat_activity, plus `distributed_session_state`:
 * coordinator, participant, or NULL for a process outside any distributed session).
 */
import type { SqlClient } from '../sql-client';
import { conflicts, LOCK_MODES } from './conflicts';
import { LOCK_TARGET_CTES, SESSION_STATE_CASES, WRAPAROUND_AUTOVACUUM } from './targets-sql';

/** Which views show the cluster's locks: PostgreSQL's own, or Limitless's cluster-wide ones. */
export type LockViews = 'postgres' | 'limitless';

/**
 * A Limitless cluster is one whose database has the rds_aurora.limitless_* views: they exist
 * only there. Both are needed, so a cluster with one of them is not taken for one.
 */
export const DETECT_LOCK_VIEWS_SQL = `
SELECT (to_regclass('rds_aurora.limitless_locks') IS NOT NULL
        AND to_regclass('rds_aurora.limitless_stat_activity') IS NOT NULL) AS limitless`;

/** Asks the database once which views to read; callers keep the answer for the run or step. */
export async function detectLockViews(db: SqlClient): Promise<LockViews> {
  const [row] = await db.query<{ limitless: boolean }>(DETECT_LOCK_VIEWS_SQL);
  return row?.limitless ? 'limitless' : 'postgres';
}

/**
 * INSPECT_LOCKS_SQL's columns, read cluster-wide, plus where the holder runs. One holder is
 * one session: the processes of one distributed session (its coordinator on a router, its
 * participants on shards, each with a pid of its node) are reported once, under the
 * coordinator's pid and subcluster, which is where its client is connected and what a person
 * can act on; `lock_subclusters` lists every subcluster where it holds or waits for the lock.
 * A process outside any distributed session (an autovacuum worker on a shard) is a session of
 * its own. Our own distributed session is left out: this process is found by its pid and
 * backend_start among the cluster's (pids repeat from node to node).
 * pg_blocking_pids sees only this router's lock table, and Limitless does not support
 * PREPARE TRANSACTION (limitless-reference.DML-support.html), so `blocking_pids` is empty and
 * there are no prepared transactions.
 */
export const INSPECT_LIMITLESS_LOCKS_SQL = `
WITH ${LOCK_TARGET_CTES},
target_named AS (
  SELECT t.rank, n.nspname::text AS nspname, c.relname::text AS relname
  FROM target t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
),
activity AS MATERIALIZED (
  SELECT a.subcluster_id::text AS subcluster_id, a.subcluster_type::text AS subcluster_type,
         a.distributed_session_id::text AS distributed_session_id,
         a.distributed_session_state::text AS distributed_session_state,
         a.pid, a.leader_pid, a.backend_start, a.usename, a.application_name, a.client_addr,
         a.backend_type, a.state, a.xact_start, a.query_start, a.wait_event_type, a.query
  FROM rds_aurora.limitless_stat_activity a
),
own AS (
  SELECT a.subcluster_id, a.distributed_session_id
  FROM activity a
  JOIN pg_stat_activity me ON me.pid = pg_backend_pid()
  WHERE a.pid = me.pid AND a.backend_start = me.backend_start
),
lock_rows AS MATERIALIZED (
  SELECT l.subcluster_id::text AS subcluster_id,
         l.distributed_session_id::text AS distributed_session_id,
         l.pid, l.mode::text AS mode, l.granted, t.rank AS target_rank, t.nspname, t.relname
  FROM rds_aurora.limitless_locks l
  JOIN target_named t ON t.nspname = l.relnspname AND t.relname = l.relname
  CROSS JOIN mode_list m
  WHERE l.locktype = 'relation' AND l.datname = current_database()
    AND l.mode = ANY (m.modes)
    AND NOT EXISTS (
      SELECT 1 FROM own o
      WHERE (o.distributed_session_id IS NOT NULL
             AND o.distributed_session_id = l.distributed_session_id)
         OR (o.subcluster_id = l.subcluster_id::text AND l.pid = pg_backend_pid()))
),
-- A parallel worker's locks are its leader's, on the worker's node (see INSPECT_LOCKS_SQL).
by_process AS (
  SELECT l.*, coalesce(w.leader_pid, l.pid) AS process_pid, w.pid IS NOT NULL AS worker,
         coalesce(l.distributed_session_id,
                  l.subcluster_id || ':' || coalesce(w.leader_pid, l.pid)) AS session_key
  FROM lock_rows l
  LEFT JOIN activity w
    ON w.subcluster_id = l.subcluster_id AND w.pid = l.pid
   AND w.leader_pid IS NOT NULL AND w.leader_pid <> w.pid
),
held AS (
  SELECT session_key, distributed_session_id, nspname, relname, mode, granted, target_rank,
         string_agg(DISTINCT subcluster_id, ',' ORDER BY subcluster_id) AS lock_subclusters,
         count(DISTINCT subcluster_id || ':' || pid) FILTER (WHERE worker) AS parallel_workers,
         (array_agg(subcluster_id ORDER BY subcluster_id, process_pid))[1] AS first_subcluster,
         (array_agg(process_pid ORDER BY subcluster_id, process_pid))[1] AS first_pid
  FROM by_process
  GROUP BY 1, 2, 3, 4, 5, 6, 7
),
-- The process a session is reported as: its distributed session's coordinator when there is
-- one, else the first of its processes holding the lock.
representative AS (
  SELECT DISTINCT ON (h.session_key) h.session_key, a.*
  FROM (SELECT DISTINCT session_key, distributed_session_id, first_subcluster, first_pid
        FROM held) h
  JOIN activity a
    ON (h.distributed_session_id IS NOT NULL
        AND a.distributed_session_id = h.distributed_session_id
        AND a.distributed_session_state = 'coordinator')
    OR (a.subcluster_id = h.first_subcluster AND a.pid = h.first_pid)
  ORDER BY h.session_key, a.distributed_session_state = 'coordinator' DESC NULLS LAST,
           a.subcluster_id, a.pid
)
SELECT
  coalesce(a.pid, h.first_pid)::int AS pid,
  a.usename::text AS user_name,
  a.application_name::text AS application_name,
  host(a.client_addr)::text AS client_addr,
  CASE
    ${SESSION_STATE_CASES}
  END::text AS state,
  ${WRAPAROUND_AUTOVACUUM} AS autovacuum_wraparound,
  a.backend_type::text AS backend_type,
  -- The progress views are per node and AWS documents no cluster-wide ones, so a maintenance
  -- command on a Limitless node is classed by its session's state (activeQuery).
  NULL::text AS maintenance_command,
  NULL::text AS gid,
  h.nspname AS relation_schema,
  h.relname AS relation_name,
  m.modes[h.target_rank]::text AS target_mode,
  h.mode AS mode,
  h.granted::boolean AS granted,
  extract(epoch FROM statement_timestamp() - a.xact_start)::float8 AS transaction_age_seconds,
  extract(epoch FROM statement_timestamp() - a.query_start)::float8 AS query_age_seconds,
  (extract(epoch FROM a.xact_start) * 1000000)::bigint::text AS transaction_start_micros,
  a.wait_event_type::text AS wait_event_type,
  ''::text AS blocking_pids,
  left(a.query, 500)::text AS query,
  coalesce(a.usename = session_user, false)::boolean AS own_session,
  h.parallel_workers::int AS parallel_workers,
  coalesce(a.subcluster_id, h.first_subcluster)::text AS subcluster_id,
  a.subcluster_type::text AS subcluster_type,
  h.lock_subclusters::text AS lock_subclusters
FROM held h
CROSS JOIN mode_list m
LEFT JOIN representative a ON a.session_key = h.session_key
ORDER BY h.nspname, h.relname, h.granted DESC, transaction_age_seconds DESC NULLS FIRST,
         subcluster_id, pid
`;

/** Every (waited-for mode, held mode) pair that conflicts, as SQL VALUES rows. */
const CONFLICTING_MODES = LOCK_MODES.flatMap((wanted) =>
  LOCK_MODES.filter((held) => conflicts(wanted, held)).map((held) => `('${wanted}', '${held}')`),
).join(', ');

/**
 * SESSIONS_BLOCKING_SQL's columns, read cluster-wide, plus the blocker's subcluster. Our
 * sessions are the distributed sessions coordinated by the role running this (other than this
 * one's) with a process waiting for a lock on a target; whom they wait for is, on the same
 * node, every other session granted a conflicting lock on that relation. pg_blocking_pids
 * reads this router's lock table only, and a wait for a row lock (a transaction ID) cannot be
 * tied across nodes from the documented columns, so this sees table locks only. Blockers are
 * reported as in INSPECT_LIMITLESS_LOCKS_SQL: under their coordinator's pid and subcluster.
 */
export const SESSIONS_BLOCKING_LIMITLESS_SQL = `
WITH wanted AS (
  SELECT n.nspname::text AS nspname, c.relname::text AS relname
  FROM jsonb_to_recordset(:targets::jsonb) AS t(schema text, name text)
  JOIN pg_class c ON c.oid = to_regclass(format('%I.%I', t.schema, t.name))
  JOIN pg_namespace n ON n.oid = c.relnamespace
),
conflicting(waited, held) AS (VALUES ${CONFLICTING_MODES}),
activity AS MATERIALIZED (
  SELECT a.subcluster_id::text AS subcluster_id, a.subcluster_type::text AS subcluster_type,
         a.distributed_session_id::text AS distributed_session_id,
         a.distributed_session_state::text AS distributed_session_state,
         a.pid, a.backend_start, a.usename, a.application_name, a.client_addr, a.state,
         a.xact_start, a.query_start, a.query
  FROM rds_aurora.limitless_stat_activity a
),
own AS (
  SELECT a.distributed_session_id
  FROM activity a
  JOIN pg_stat_activity me ON me.pid = pg_backend_pid()
  WHERE a.pid = me.pid AND a.backend_start = me.backend_start
),
locks AS MATERIALIZED (
  SELECT l.subcluster_id::text AS subcluster_id,
         l.distributed_session_id::text AS distributed_session_id,
         l.pid, l.mode::text AS mode, l.granted, w.nspname, w.relname
  FROM rds_aurora.limitless_locks l
  JOIN wanted w ON w.nspname = l.relnspname AND w.relname = l.relname
  WHERE l.locktype = 'relation' AND l.datname = current_database()
),
ours AS (
  SELECT l.*, c.pid AS coordinator_pid
  FROM locks l
  JOIN activity c
    ON c.distributed_session_id = l.distributed_session_id
   AND c.distributed_session_state = 'coordinator'
  WHERE NOT l.granted AND c.usename = session_user
    AND NOT EXISTS (SELECT 1 FROM own o WHERE o.distributed_session_id = l.distributed_session_id)
),
blocking AS (
  SELECT DISTINCT o.coordinator_pid AS blocked_pid, h.distributed_session_id,
         h.subcluster_id AS held_on, h.pid AS held_by
  FROM ours o
  JOIN locks h
    ON h.subcluster_id = o.subcluster_id AND h.nspname = o.nspname AND h.relname = o.relname
   AND h.granted AND h.distributed_session_id IS DISTINCT FROM o.distributed_session_id
  JOIN conflicting x ON x.waited = o.mode AND x.held = h.mode
),
named AS (
  SELECT DISTINCT ON (b.blocked_pid, coalesce(b.distributed_session_id, b.held_on || ':' || b.held_by))
         b.blocked_pid, b.held_on, b.held_by, a.*
  FROM blocking b
  LEFT JOIN activity a
    ON (b.distributed_session_id IS NOT NULL
        AND a.distributed_session_id = b.distributed_session_id
        AND a.distributed_session_state = 'coordinator')
    OR (a.subcluster_id = b.held_on AND a.pid = b.held_by)
  ORDER BY b.blocked_pid, coalesce(b.distributed_session_id, b.held_on || ':' || b.held_by),
           a.distributed_session_state = 'coordinator' DESC NULLS LAST, a.subcluster_id, a.pid
)
SELECT n.blocked_pid::int AS blocked_pid,
       coalesce(n.pid, n.held_by)::int AS pid,
       n.usename::text AS user_name,
       n.application_name::text AS application_name,
       host(n.client_addr)::text AS client_addr,
       n.state::text AS state,
       extract(epoch FROM statement_timestamp() - n.xact_start)::float8 AS transaction_age_seconds,
       extract(epoch FROM statement_timestamp() - n.query_start)::float8 AS query_age_seconds,
       (extract(epoch FROM n.xact_start) * 1000000)::bigint::text AS transaction_start_micros,
       left(n.query, 500)::text AS query,
       coalesce(n.subcluster_id, n.held_on)::text AS subcluster_id,
       n.subcluster_type::text AS subcluster_type
FROM named n
ORDER BY 1, 2
`;
