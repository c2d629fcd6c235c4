/**
 * The swap: one SQL statement, so that over the RDS Data API (one statement per call, no
 * session between calls) its locks are held for a single round trip and released by the
 * statement's own commit. All tables of a run are published together or not at all.
 *
 * The plan (built and validated in TypeScript, see ../swap/plan.ts) is a bound jsonb
 * parameter; every name in it is used only through format('%I').
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

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
  v_table jsonb;
  v_live regclass;
  v_staging regclass;
  v_result jsonb;
  v_results jsonb := '[]';
BEGIN
  -- Every lock wait below gives up after lockTimeoutMs with SQLSTATE 55P03, rolling back
  -- the whole statement: the caller retries later, and no reader queues behind us for long.
  PERFORM set_config('lock_timeout', (p_plan ->> 'lockTimeoutMs')::integer || 'ms', true);

  -- One fixed order for every run (schema, then name, bytewise), so two runs cannot deadlock
  -- on each other's tables.
  FOR v_lock IN
    SELECT l.schema_name, l.relation_name, l.lock_mode, l.is_staging
    FROM jsonb_array_elements(p_plan -> 'tables') t,
         LATERAL (VALUES (t -> 'live' ->> 'schema', t -> 'live' ->> 'name', t ->> 'liveLock', false),
                         (t -> 'staging' ->> 'schema', t -> 'staging' ->> 'name', t ->> 'stagingLock', true))
           AS l(schema_name, relation_name, lock_mode, is_staging)
    ORDER BY l.schema_name COLLATE "C", l.relation_name COLLATE "C"
  LOOP
    IF to_regclass(format('%I.%I', v_lock.schema_name, v_lock.relation_name)) IS NULL THEN
      IF v_lock.is_staging THEN
        RAISE EXCEPTION 'staging table %.% does not exist', quote_ident(v_lock.schema_name),
          quote_ident(v_lock.relation_name) USING ERRCODE = '${SYNC_SQLSTATE.stagingMissing}';
      END IF;
      CONTINUE; -- a first publication creates the live table
    END IF;
    EXECUTE format('LOCK TABLE %I.%I IN %s MODE', v_lock.schema_name, v_lock.relation_name,
                   CASE v_lock.lock_mode
                     WHEN 'AccessShareLock' THEN 'ACCESS SHARE'
                     WHEN 'RowExclusiveLock' THEN 'ROW EXCLUSIVE'
                     WHEN 'AccessExclusiveLock' THEN 'ACCESS EXCLUSIVE'
                   END);
  END LOOP;
  v_locked := clock_timestamp();

  FOR v_table IN SELECT t FROM jsonb_array_elements(p_plan -> 'tables') t LOOP
    v_live := to_regclass(format('%I.%I', v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name'));
    v_staging := to_regclass(format('%I.%I', v_table -> 'staging' ->> 'schema', v_table -> 'staging' ->> 'name'));
    IF v_live IS NULL OR v_table ->> 'strategy' = 'rename' THEN
      v_result := ${ADMIN_SCHEMA}.publish_by_rename(
        v_table -> 'live' ->> 'schema', v_table -> 'live' ->> 'name', v_staging,
        v_table ->> 'retiredName', p_plan ->> 'runId');
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
    v_results := v_results || jsonb_build_object(
      'live', v_table -> 'live', 'strategy', v_table ->> 'strategy', 'result', v_result);
  END LOOP;

  RETURN jsonb_build_object(
    'tables', v_results,
    'lockWaitMs', round(extract(epoch FROM v_locked - v_started) * 1000, 1),
    'lockHeldMs', round(extract(epoch FROM clock_timestamp() - v_locked) * 1000, 1));
END
$fn$`;

export const SWAP_FUNCTION_SQL: readonly string[] = [SWAP_SQL];
