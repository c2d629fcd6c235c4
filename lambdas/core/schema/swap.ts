/**
 * The swap: one SQL statement, so that over the RDS Data API (one statement per call, no
 * session between calls) its locks are held for a single round trip and released by the
 * statement's own commit. All tables of a run are published together or not at all.
 *
 * The plan (built and validated in TypeScript, see ../swap/plan.ts) is a bound jsonb
 * parameter; every name in it is used only through format('%I').
 *
 * Every lock the swap needs is taken up front, in an order that cannot form a cycle with
 * readers or writers (see SWAP_LOCKS_SQL), and the swap is recorded by run id in the same
 * transaction, so that a retried call after an ambiguous commit answers "already swapped".
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

/**
 * The relations the swap locks, in the order it locks them. A reader of a view locks the view,
 * then what it reads; a writer locks its table, then (through nextval) the table's sequence.
 * Locking in that same order, each relation in the strongest mode any later statement of the
 * swap needs, leaves no lock to wait for or upgrade once the work starts, so readers and
 * writers can make the swap wait (for at most lock_timeout) but never deadlock with it:
 * 1. staging tables (and the replacements of changed partitions), then 2. the sequences their
 *    columns own: only the pipeline uses them;
 * 3. the views that rename re-points with CREATE OR REPLACE VIEW (those selecting directly
 *    from a live table), outermost first (a view over another of them comes before it,
 *    depth counted through every view in between), since a reader locks the outer view first;
 * 4. the live tables, a partitioned table before its changed partitions (which a reader of
 *    the parent locks after it);
 * 5. the sequences the live tables' columns own (serial or identity), after their tables.
 * Within each step: schema, then name, bytewise, so two runs cannot deadlock on each other.
 * Relations that do not exist are left out (a first publication creates the live table).
 */
const SWAP_LOCKS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.swap_locks(p_plan jsonb)
RETURNS TABLE (relation regclass, lock_mode text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  WITH RECURSIVE planned AS (
    SELECT to_regclass(format('%I.%I', t -> 'live' ->> 'schema', t -> 'live' ->> 'name'))::oid AS live,
           to_regclass(format('%I.%I', t -> 'staging' ->> 'schema', t -> 'staging' ->> 'name'))::oid AS staging,
           t ->> 'liveLock' AS live_lock,
           t ->> 'stagingLock' AS staging_lock,
           t ->> 'viewLock' AS view_lock,
           t ->> 'liveSequenceLock' AS live_sequence_lock,
           t ->> 'stagingSequenceLock' AS staging_sequence_lock,
           1 AS level
    FROM jsonb_array_elements(p_plan -> 'tables') t
    UNION ALL
    -- A partitioned table's changed partitions, each replaced as by rename: locked after
    -- their parent (level 0), as a reader of the parent locks it, then its partitions.
    SELECT to_regclass(format('%I.%I', p -> 'partition' ->> 'schema', p -> 'partition' ->> 'name'))::oid,
           to_regclass(format('%I.%I', p -> 'replacement' ->> 'schema', p -> 'replacement' ->> 'name'))::oid,
           'AccessExclusiveLock', 'AccessExclusiveLock', 'AccessExclusiveLock', 'AccessExclusiveLock',
           'AccessExclusiveLock', 0
    FROM jsonb_array_elements(p_plan -> 'tables') t,
         jsonb_array_elements(CASE jsonb_typeof(t -> 'partitions') WHEN 'array' THEN t -> 'partitions' ELSE '[]' END) p
  ),
  -- Every view over a live table whose views are re-pointed, at each depth it sits: 1 when it
  -- selects from the table, n + 1 when it selects from a view at depth n.
  views (view_oid, depth, direct, mode) AS (
    SELECT r.ev_class, 1, true, p.view_lock
    FROM planned p
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = p.live
                    AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> p.live
    JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
    WHERE p.view_lock IS NOT NULL
    UNION
    SELECT r.ev_class, w.depth + 1, false, w.mode
    FROM views w
    JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = w.view_oid
                    AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> w.view_oid
    JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
    WHERE w.depth < 100 -- views cannot form a cycle; this only bounds the walk
  ),
  owned_sequences AS (
    SELECT d.refobjid AS table_oid, d.objid AS sequence_oid
    FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i')
  ),
  wanted (step, depth, relid, mode) AS (
    SELECT 1, 0, p.staging, p.staging_lock FROM planned p WHERE p.staging IS NOT NULL
    UNION ALL
    SELECT 2, 0, o.sequence_oid, p.staging_sequence_lock
    FROM planned p JOIN owned_sequences o ON o.table_oid = p.staging
    UNION ALL
    SELECT 3, max(w.depth), w.view_oid, w.mode
    FROM views w
    GROUP BY w.view_oid, w.mode
    HAVING bool_or(w.direct)
    UNION ALL
    SELECT 4, p.level, p.live, p.live_lock FROM planned p WHERE p.live IS NOT NULL
    UNION ALL
    SELECT 5, 0, o.sequence_oid, p.live_sequence_lock
    FROM planned p JOIN owned_sequences o ON o.table_oid = p.live
    WHERE p.live_sequence_lock IS NOT NULL
  )
  SELECT w.relid::regclass, w.mode
  FROM wanted w
  JOIN pg_class c ON c.oid = w.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  -- A partitioned table none of whose partitions changed is not locked at all.
  WHERE w.mode IS NOT NULL
  ORDER BY w.step, w.depth DESC, n.nspname COLLATE "C", c.relname COLLATE "C"
$fn$`;

/**
 * Takes one lock of the swap. LOCK TABLE serves tables only: on a view it also locks every
 * relation the view reads, in the same mode ("When a view is locked, all relations appearing
 * in the view definition query are also locked recursively with the same lock mode",
 * https://www.postgresql.org/docs/current/sql-lock.html), which would shut out readers of
 * tables the swap never touches; and it refuses sequences. A view or sequence is locked by
 * giving it to the owner it already has: ALTER ... OWNER TO takes ACCESS EXCLUSIVE on that
 * relation alone ("An ACCESS EXCLUSIVE lock is acquired unless explicitly noted",
 * https://www.postgresql.org/docs/current/sql-altertable.html) and changes nothing.
 */
const LOCK_RELATION_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.lock_relation(p_relation regclass, p_mode text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_kind "char";
  v_owner name;
BEGIN
  SELECT c.relkind, pg_get_userbyid(c.relowner) INTO v_kind, v_owner
  FROM pg_class c WHERE c.oid = p_relation;
  IF v_kind IN ('r', 'p') THEN
    -- LOCK TABLE locks a partitioned table's partitions too ("If a table is ... partitioned ...
    -- the command also locks ... all its descendant tables", unless ONLY is given:
    -- https://www.postgresql.org/docs/current/sql-lock.html). ACCESS EXCLUSIVE on a partitioned
    -- table is taken for DETACH PARTITION only (rename and truncate refuse such a table), which
    -- needs the parent and the changed partitions, locked on their own: ONLY, so that a reader
    -- of an unchanged partition is not waited for.
    EXECUTE format('LOCK TABLE %s%s IN %s MODE',
                   CASE WHEN v_kind = 'p' AND p_mode = 'AccessExclusiveLock' THEN 'ONLY ' ELSE '' END,
                   p_relation,
                   CASE p_mode
                     WHEN 'AccessShareLock' THEN 'ACCESS SHARE'
                     WHEN 'RowExclusiveLock' THEN 'ROW EXCLUSIVE'
                     WHEN 'AccessExclusiveLock' THEN 'ACCESS EXCLUSIVE'
                   END);
  ELSIF v_kind IN ('v', 'S') AND p_mode = 'AccessExclusiveLock' THEN
    EXECUTE format('ALTER %s %s OWNER TO %I', CASE v_kind WHEN 'v' THEN 'VIEW' ELSE 'SEQUENCE' END,
                   p_relation, v_owner);
  ELSE
    RAISE EXCEPTION 'the swap cannot lock % (relkind %) in mode %', p_relation, v_kind, p_mode
      USING ERRCODE = '${SYNC_SQLSTATE.invalidArguments}';
  END IF;
END
$fn$`;

const SWAP_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.swap(p_plan jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_started timestamptz := clock_timestamp();
  v_locked timestamptz;
  v_lock record;
  v_pair record;
  v_locks jsonb := '[]';
  v_table jsonb;
  v_live regclass;
  v_staging regclass;
  v_keys regclass;
  v_result jsonb;
  v_results jsonb := '[]';
  v_run_id text := p_plan ->> 'runId';
  -- What identifies this swap besides its run id: a retry sends the same tables (its
  -- lock_timeout may differ), while a rollback reuses a run id for another table.
  v_digest text := md5((SELECT jsonb_agg(jsonb_build_array(t -> 'live', t -> 'staging', t ->> 'strategy'))
                        FROM jsonb_array_elements(p_plan -> 'tables') t)::text);
  v_recorded jsonb;
  -- Each increment whose proof failed: all are named at the end, so that each table's next
  -- run is full, not only the first one's.
  v_mismatches text[] := '{}';
  v_mismatch text;
BEGIN
  -- A retry of a swap that committed (its answer lost to a Data API cut-off or a Lambda
  -- retry) finds it recorded: answer with what it did, and touch nothing.
  SELECT s.result INTO v_recorded FROM ${ADMIN_SCHEMA}.swaps s
   WHERE s.run_id = v_run_id AND s.plan_digest = v_digest;
  IF FOUND THEN
    RETURN v_recorded || jsonb_build_object('alreadySwapped', true);
  END IF;

  FOR v_table IN SELECT t FROM jsonb_array_elements(p_plan -> 'tables') t LOOP
    IF to_regclass(format('%I.%I', v_table -> 'staging' ->> 'schema', v_table -> 'staging' ->> 'name')) IS NULL THEN
      -- Another call of this same swap may have committed since the check above.
      SELECT s.result INTO v_recorded FROM ${ADMIN_SCHEMA}.swaps s
       WHERE s.run_id = v_run_id AND s.plan_digest = v_digest;
      IF FOUND THEN
        RETURN v_recorded || jsonb_build_object('alreadySwapped', true);
      END IF;
      RAISE EXCEPTION 'staging table %.% does not exist', quote_ident(v_table -> 'staging' ->> 'schema'),
        quote_ident(v_table -> 'staging' ->> 'name') USING ERRCODE = '${SYNC_SQLSTATE.stagingMissing}';
    END IF;
  END LOOP;

  -- Every lock wait below gives up after lockTimeoutMs with SQLSTATE 55P03, rolling back
  -- the whole statement: the caller retries later, and no reader queues behind us for long.
  PERFORM set_config('lock_timeout', (p_plan ->> 'lockTimeoutMs')::integer || 'ms', true);

  -- Before any lock, publish_by_rename's reads of the catalog for each changed partition
  -- (p_warm_up: see ./rename.ts), so that what their first run in this session costs is paid
  -- before readers of the parent queue behind our locks: it halves the time they wait
  -- (bench:partitions). It also puts that time between the lock gate's look at the locks and
  -- our lock requests, which makes an attempt likelier to meet a reader; a plain rename, whose
  -- hold is short already, goes without (docs/design.md, "Partitioned tables"). In a
  -- subtransaction that is always rolled back, so that it leaves nothing behind, not even the
  -- ACCESS SHARE locks pg_get_viewdef takes (under lock_timeout, like every wait here); an
  -- error there (a lock timeout, a table dropped meanwhile) is for the locked part to meet,
  -- and to report.
  FOR v_pair IN
    SELECT p -> 'partition' ->> 'schema' AS live_schema, p -> 'partition' ->> 'name' AS live_name,
           to_regclass(format('%I.%I', p -> 'replacement' ->> 'schema', p -> 'replacement' ->> 'name')) AS staging
    FROM jsonb_array_elements(p_plan -> 'tables') t,
         jsonb_array_elements(CASE jsonb_typeof(t -> 'partitions') WHEN 'array' THEN t -> 'partitions' ELSE '[]' END) p
  LOOP
    CONTINUE WHEN v_pair.staging IS NULL;
    BEGIN
      PERFORM ${ADMIN_SCHEMA}.publish_by_rename(v_pair.live_schema, v_pair.live_name, v_pair.staging,
                                                NULL, v_run_id, true);
      RAISE EXCEPTION 'warm-up only';
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END LOOP;
  -- lockWaitMs counts from here: the warm-up waited for no lock the swap takes.
  v_started := clock_timestamp();
  BEGIN
    FOR v_lock IN SELECT * FROM ${ADMIN_SCHEMA}.swap_locks(p_plan) LOOP
      PERFORM ${ADMIN_SCHEMA}.lock_relation(v_lock.relation, v_lock.lock_mode);
      v_locks := v_locks || jsonb_build_object('relation', v_lock.relation::text, 'mode', v_lock.lock_mode);
    END LOOP;
    -- A view created on a live table after the list was read, before the table's lock was
    -- granted (CREATE VIEW needs a lock on the table, so none can come after): lock it too.
    FOR v_lock IN SELECT * FROM ${ADMIN_SCHEMA}.swap_locks(p_plan) l
                  WHERE l.relation::text NOT IN (SELECT e ->> 'relation' FROM jsonb_array_elements(v_locks) e) LOOP
      PERFORM ${ADMIN_SCHEMA}.lock_relation(v_lock.relation, v_lock.lock_mode);
      v_locks := v_locks || jsonb_build_object('relation', v_lock.relation::text, 'mode', v_lock.lock_mode);
    END LOOP;
  EXCEPTION WHEN undefined_table THEN
    -- A relation went away while we waited for its lock: most likely another call of this
    -- same swap committed meanwhile (and dropped or renamed its staging table).
    SELECT s.result INTO v_recorded FROM ${ADMIN_SCHEMA}.swaps s
     WHERE s.run_id = v_run_id AND s.plan_digest = v_digest;
    IF FOUND THEN
      RETURN v_recorded || jsonb_build_object('alreadySwapped', true);
    END IF;
    RAISE;
  END;
  v_locked := clock_timestamp();

  FOR v_table IN SELECT t FROM jsonb_array_elements(p_plan -> 'tables') t LOOP
    v_live := to_regclass(format('%I.%I', v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name'));
    v_staging := to_regclass(format('%I.%I', v_table -> 'staging' ->> 'schema', v_table -> 'staging' ->> 'name'));
    IF v_live IS NOT NULL AND jsonb_typeof(v_table -> 'increment') = 'object' THEN
      -- The key table of deletes "reconcile" is the pipeline's alone, like staging: not
      -- locked up front, dropped with staging.
      v_keys := NULL;
      IF jsonb_typeof(v_table -> 'increment' -> 'keys') = 'object' THEN
        v_keys := to_regclass(format('%I.%I', v_table -> 'increment' -> 'keys' ->> 'schema',
                                     v_table -> 'increment' -> 'keys' ->> 'name'));
        IF v_keys IS NULL THEN
          RAISE EXCEPTION 'key table %.% does not exist', quote_ident(v_table -> 'increment' -> 'keys' ->> 'schema'),
            quote_ident(v_table -> 'increment' -> 'keys' ->> 'name') USING ERRCODE = '${SYNC_SQLSTATE.stagingMissing}';
        END IF;
      END IF;
      v_result := ${ADMIN_SCHEMA}.publish_increment(
        v_live, v_staging, ARRAY(SELECT jsonb_array_elements_text(v_table -> 'primaryKey')),
        v_table -> 'increment' ->> 'mode', v_keys);
      EXECUTE format('DROP TABLE %s', v_staging);
      IF v_keys IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', v_keys);
      END IF;
      -- Before commit: live with the increment must be the whole source table, or nothing is.
      BEGIN
        PERFORM ${ADMIN_SCHEMA}.check_increment(v_live, v_table -> 'increment' -> 'proof');
      EXCEPTION WHEN SQLSTATE '${SYNC_SQLSTATE.incrementMismatch}' THEN
        GET STACKED DIAGNOSTICS v_mismatch = MESSAGE_TEXT;
        v_mismatches := v_mismatches || v_mismatch;
      END;
    ELSIF jsonb_typeof(v_table -> 'increment') = 'object' THEN
      -- Live was dropped since the increment was planned: staging holds the delta only, which
      -- must not become the table (by rename, below). RS002 has the table's next run be full.
      RAISE EXCEPTION 'the increment of % was not applied: the live table no longer exists, and the staging table holds only the rows that changed; the next run of this table is a full refresh.',
        '"' || replace(v_table -> 'live' ->> 'schema', '"', '""') || '"."' || replace(v_table -> 'live' ->> 'name', '"', '""') || '"'
        USING ERRCODE = '${SYNC_SQLSTATE.incrementMismatch}';
    ELSIF v_live IS NOT NULL AND jsonb_typeof(v_table -> 'partitions') = 'array' THEN
      v_result := ${ADMIN_SCHEMA}.publish_partitions(v_live, v_table -> 'partitions', v_run_id);
      EXECUTE format('DROP TABLE %s', v_staging);
    ELSIF v_live IS NULL OR v_table ->> 'strategy' = 'rename' THEN
      v_result := ${ADMIN_SCHEMA}.publish_by_rename(
        v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name', v_staging,
        v_table ->> 'retiredName', v_run_id);
    ELSIF v_table ->> 'strategy' = 'truncate' THEN
      v_result := ${ADMIN_SCHEMA}.publish_by_truncate(v_live, v_staging);
      EXECUTE format('DROP TABLE %s', v_staging);
    ELSIF v_table ->> 'strategy' = 'merge' THEN
      v_result := ${ADMIN_SCHEMA}.publish_by_merge(
        v_live, v_staging, ARRAY(SELECT jsonb_array_elements_text(v_table -> 'primaryKey')));
      EXECUTE format('DROP TABLE %s', v_staging);
    ELSE
      RAISE EXCEPTION 'unknown strategy %', v_table ->> 'strategy';
    END IF;
    -- The watermark commits with the rows it stands for (./watermarks.ts).
    IF jsonb_typeof(v_table -> 'watermark') = 'object' THEN
      INSERT INTO ${ADMIN_SCHEMA}.watermarks AS w
        (target_schema, target_table, cursor_column, cursor_type, watermark, full_refresh_reason, run_id,
         source_schema, source_table)
      VALUES (v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name',
              v_table -> 'watermark' ->> 'cursor', v_table -> 'watermark' ->> 'cursorKind',
              v_table -> 'watermark' ->> 'value', v_table -> 'watermark' ->> 'fullRefreshReason', v_run_id,
              v_table -> 'watermark' -> 'source' ->> 'schema', v_table -> 'watermark' -> 'source' ->> 'name')
      ON CONFLICT (target_schema, target_table) DO UPDATE
        SET cursor_column = EXCLUDED.cursor_column, cursor_type = EXCLUDED.cursor_type,
            source_schema = EXCLUDED.source_schema, source_table = EXCLUDED.source_table,
            watermark = EXCLUDED.watermark, full_refresh_reason = EXCLUDED.full_refresh_reason,
            run_id = EXCLUDED.run_id, updated_at = clock_timestamp();
    ELSE
      -- Published without a watermark (a run of the table without "incremental", a rollback):
      -- a watermark kept from before no longer says which rows live holds. An increment from
      -- it would append rows live already has, or leave out changes a rolled-back version
      -- lacks, where the figures cannot tell. Mark it for a full run. (A partition's rollback
      -- is planned on its partitioned table, whose row this is.)
      UPDATE ${ADMIN_SCHEMA}.watermarks w
         SET full_refresh_reason = format('the live table was replaced by %s, which keeps no watermark (a run of the table without "incremental", or a rollback), so its watermark no longer says which rows live holds', v_run_id),
             updated_at = clock_timestamp()
       WHERE (w.target_schema, w.target_table) = (v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name');
    END IF;
    v_results := v_results || jsonb_build_object(
      'live', v_table -> 'live', 'strategy', v_table ->> 'strategy', 'result', v_result);
  END LOOP;

  IF cardinality(v_mismatches) > 0 THEN
    RAISE EXCEPTION '%', array_to_string(v_mismatches, E'\n')
      USING ERRCODE = '${SYNC_SQLSTATE.incrementMismatch}';
  END IF;

  v_result := jsonb_build_object(
    'tables', v_results,
    'locks', v_locks,
    'lockWaitMs', round(extract(epoch FROM v_locked - v_started) * 1000, 1),
    'lockHeldMs', round(extract(epoch FROM clock_timestamp() - v_locked) * 1000, 1));
  INSERT INTO ${ADMIN_SCHEMA}.swaps (run_id, plan_digest, result) VALUES (v_run_id, v_digest, v_result);
  RETURN v_result || jsonb_build_object('alreadySwapped', false);
END
$fn$`;

export const SWAP_FUNCTION_SQL: readonly string[] = [SWAP_LOCKS_SQL, LOCK_RELATION_SQL, SWAP_SQL];
