/**
 * `redshift_sync.publish_increment(live, staging, key_columns, mode, keys)`: applies an increment
 * (staging holds only the rows past the watermark), called by `redshift_sync.swap` in its
 * transaction, which then writes the watermark and proves the whole table (./swap.ts).
 * - `merge`: merge_rows without its DELETE (./publish-merge.ts): rows whose key live has are
 *   updated when their values changed (a row sent again unchanged is not written), the rest
 *   inserted. The same checks of keys and constraints, and the same comparison of values.
 * - `append`: every row of staging inserted.
 * With a key table (`deletes: "reconcile"`), the live rows whose key the source no longer has
 * are deleted first (./reconcile-deletes.ts), so a key deleted and inserted again is updated.
 * All take ROW EXCLUSIVE on live only, so readers never wait. Returns rows inserted, updated
 * and deleted (0 without a key table).
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

const { badStagingData, invalidArguments } = SYNC_SQLSTATE;

export const PUBLISH_INCREMENT_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_increment(
  p_live regclass, p_staging regclass, p_key_columns text[], p_mode text, p_keys regclass)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_live text;
  v_staging text;
  v_columns text;
  v_inserted bigint := 0;
  v_deleted bigint := 0;
  v_constraint text;
  v_message text;
  v_detail text;
BEGIN
  IF p_live IS NULL OR p_staging IS NULL THEN
    RAISE EXCEPTION '${ADMIN_SCHEMA}.publish_increment needs a live and a staging table (got live %, staging %)',
      coalesce(p_live::text, 'NULL'), coalesce(p_staging::text, 'NULL')
      USING ERRCODE = '${invalidArguments}';
  END IF;
  IF p_mode IS DISTINCT FROM 'merge' AND p_mode IS DISTINCT FROM 'append' THEN
    RAISE EXCEPTION 'unknown increment mode % for %: give "merge" or "append"', coalesce(p_mode, 'NULL'), p_live
      USING ERRCODE = '${invalidArguments}';
  END IF;
  IF p_keys IS NOT NULL THEN
    v_deleted := ${ADMIN_SCHEMA}.delete_missing_keys(p_live, p_keys, p_key_columns);
  END IF;
  IF p_mode = 'merge' THEN
    RETURN ${ADMIN_SCHEMA}.merge_rows(p_live, p_staging, p_key_columns, false)
           || jsonb_build_object('deleted', v_deleted);
  END IF;
  SELECT c.live, c.staging INTO v_live, v_staging
    FROM ${ADMIN_SCHEMA}.publish_pair('increment', p_live, p_staging) c;
  SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO v_columns
    FROM pg_attribute a
   WHERE a.attrelid = p_live AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
  BEGIN
    -- OVERRIDING SYSTEM VALUE: staging's values win over GENERATED ALWAYS AS IDENTITY too.
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s',
                   v_live, v_columns, v_columns, v_staging);
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
  EXCEPTION WHEN integrity_constraint_violation THEN
    GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION 'cannot append % to %: constraint % rejected the new rows: %. A row was sent again (its cursor did not grow past the watermark only once), or the source breaks the constraint: use mode "merge" with a key, or fix the source data.',
      v_staging, v_live, coalesce(quote_ident(nullif(v_constraint, '')), '(unnamed)'),
      concat_ws(': ', v_message, nullif(v_detail, ''))
      USING ERRCODE = '${badStagingData}';
  END;
  RETURN jsonb_build_object('inserted', v_inserted, 'updated', 0, 'deleted', v_deleted);
END
$function$
`;
