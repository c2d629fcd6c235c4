/**
 * SQL common to both lock queries (pg_locks on PostgreSQL, rds_aurora.limitless_locks on
 * Aurora Limitless): how a session's state is read, and the relations a lock check looks at:
 * `mode_list` (the table lock
 * modes, weakest first), `wanted` (each target, and when asked the views selecting from it and
 * the sequences it owns, in the target's mode) and `target` (one mode per relation, by its rank
 * in mode_list). `:targets` is a JSON array of
 * `{schema, name, mode, include_dependent_views, include_owned_sequences}`.
 */
import { LOCK_MODES } from './conflicts';

export const LOCK_TARGET_CTES = `
mode_list AS (
  SELECT ARRAY[${LOCK_MODES.map((mode) => `'${mode}'`).join(', ')}]::text[] AS modes
),
input AS (
  SELECT t.mode, t.include_dependent_views, coalesce(t.include_owned_sequences, false)
           AS include_owned_sequences,
         to_regclass(format('%I.%I', t.schema, t.name))::oid AS relid
  FROM jsonb_to_recordset(:targets::jsonb)
       AS t(schema text, name text, mode text, include_dependent_views boolean,
            include_owned_sequences boolean)
),
wanted AS (
  SELECT relid, mode FROM input WHERE relid IS NOT NULL
  UNION
  SELECT r.ev_class, i.mode
  FROM input i
  JOIN pg_depend d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = i.relid
   AND d.classid = 'pg_rewrite'::regclass AND d.deptype = 'n'
  JOIN pg_rewrite r ON r.oid = d.objid
  JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
  WHERE i.include_dependent_views AND r.ev_class <> i.relid
  UNION
  SELECT d.objid, i.mode
  FROM input i
  JOIN pg_depend d
    ON d.refclassid = 'pg_class'::regclass AND d.refobjid = i.relid
   AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  WHERE i.include_owned_sequences
),
-- One mode per relation, as combinedMode() in conflicts.ts: the strongest, except that
-- ShareLock (5) with RowExclusiveLock (3) or ShareUpdateExclusiveLock (4) needs
-- ShareRowExclusiveLock (6), because ShareLock does not conflict with itself.
target AS (
  SELECT w.relid,
         CASE WHEN max(w.rank) = 5 AND bool_or(w.rank IN (3, 4)) THEN 6 ELSE max(w.rank) END
           AS rank
  FROM (SELECT wanted.relid, array_position(m.modes, wanted.mode) AS rank
        FROM wanted CROSS JOIN mode_list m) w
  GROUP BY w.relid
)`;

/**
 * The `WHEN`s and `ELSE` of a holder's `state`, over the session's pg_stat_activity row (or
 * limitless_stat_activity's, which has the same columns) as `a`: an autovacuum worker, one of
 * the states a transaction can be in, or 'other'. A query may put its own WHENs before them.
 */
export const SESSION_STATE_CASES = `WHEN a.backend_type = 'autovacuum worker' THEN 'autovacuum'
    WHEN a.state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
      THEN a.state
    ELSE 'other'`;

/** Whether the session `a` is an autovacuum run to prevent wraparound (it does not give way). */
export const WRAPAROUND_AUTOVACUUM = `coalesce(a.backend_type = 'autovacuum worker'
           AND a.query LIKE '%(to prevent wraparound)%', false)::boolean`;
