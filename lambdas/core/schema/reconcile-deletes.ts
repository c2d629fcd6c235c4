/**
 * `redshift_sync.delete_missing_keys(live, keys, key_columns)`: the deletes of an increment
 * with `deletes: "reconcile"`. `keys` holds every key of the whole source table in the
 * unload's snapshot (a key-only UNLOAD, imported next to staging); the live rows whose key it
 * lacks were deleted from the source, and are deleted here, in the swap's transaction, before
 * the delta is applied and the whole table proved (./publish-increment.ts, ./swap.ts).
 *
 * One anti-join (DELETE ... WHERE NOT EXISTS), over live's own rows only (ONLY, as merge_rows
 * deletes), under ROW EXCLUSIVE like the rest of an increment. Keys are compared with
 * merge_rows' templates (column_comparisons, ./publish-merge.ts) on both sides: the key table
 * is created with live's key column types, so a key merge would match is a key kept here.
 * A NULL in the key table is refused, as merge_rows refuses one in staging: it identifies no
 * row, and the live row it stands for would be deleted.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

const { badStagingData, invalidArguments } = SYNC_SQLSTATE;

export const RECONCILE_DELETES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.delete_missing_keys(
  p_live regclass, p_keys regclass, p_key_columns text[])
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- The text forms some templates compare are exact for floats only with extra_float_digits > 0.
SET extra_float_digits = 1
AS $function$
DECLARE
  v_live text;
  v_live_rows text;
  v_keys text;
  v_key text;
  v_template text;
  v_match text[] := '{}';
  v_null_counts text[] := '{}';
  v_counts bigint[];
  v_constraint text;
  v_detail text;
  v_deleted bigint;
BEGIN
  SELECT format('%I.%I', n.nspname, c.relname),
         CASE c.relkind WHEN 'p' THEN '' ELSE 'ONLY ' END || format('%I.%I', n.nspname, c.relname)
    INTO v_live, v_live_rows
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_live AND c.relkind IN ('r', 'p');
  SELECT format('%I.%I', n.nspname, c.relname) INTO v_keys
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_keys AND c.relkind = 'r';
  IF v_live IS NULL OR v_keys IS NULL OR coalesce(cardinality(p_key_columns), 0) = 0
     OR array_position(p_key_columns, NULL) IS NOT NULL THEN
    RAISE EXCEPTION '${ADMIN_SCHEMA}.delete_missing_keys needs a live table, a key table and key columns (got %, %, %)',
      coalesce(p_live::text, 'NULL'), coalesce(p_keys::text, 'NULL'), coalesce(p_key_columns::text, 'NULL')
      USING ERRCODE = '${invalidArguments}';
  END IF;
  FOREACH v_key IN ARRAY p_key_columns LOOP
    SELECT c.template INTO v_template FROM ${ADMIN_SCHEMA}.column_comparisons(p_live) c
     WHERE c.attname = v_key;
    IF v_template IS NULL OR NOT EXISTS (
        SELECT FROM pg_attribute a
         WHERE a.attrelid = p_keys AND a.attname = v_key AND a.attnum > 0 AND NOT a.attisdropped) THEN
      RAISE EXCEPTION 'cannot delete the rows gone from the source from %: key column % is not a column of both % and the key table %. Set "primaryKey" for this table in the config to columns of the live table, and run again.',
        v_live, format('%I', v_key), v_live, v_keys
        USING ERRCODE = '${invalidArguments}';
    END IF;
    v_match := v_match || format('%s = %s', format(v_template, 'l', v_key), format(v_template, 'k', v_key));
    v_null_counts := v_null_counts || format('count(*) FILTER (WHERE k.%I IS NULL)', v_key);
  END LOOP;

  EXECUTE format('SELECT ARRAY[%s] FROM %s AS k', array_to_string(v_null_counts, ', '), v_keys)
     INTO v_counts;
  FOR i IN 1 .. cardinality(p_key_columns) LOOP
    IF v_counts[i] > 0 THEN
      RAISE EXCEPTION 'cannot delete the rows gone from the source from %: % source row(s) have NULL in key column %, so the key does not identify every row. Fix the source data, or set "primaryKey" for this table in the config to columns that are never NULL.',
        v_live, v_counts[i], format('%I', p_key_columns[i])
        USING ERRCODE = '${badStagingData}';
    END IF;
  END LOOP;

  BEGIN
    EXECUTE format('DELETE FROM %s AS l WHERE NOT EXISTS (SELECT FROM %s AS k WHERE %s)',
                   v_live_rows, v_keys, array_to_string(v_match, ' AND '));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
  EXCEPTION WHEN foreign_key_violation THEN
    GET STACKED DIAGNOSTICS v_constraint = CONSTRAINT_NAME, v_detail = PG_EXCEPTION_DETAIL;
    RAISE EXCEPTION 'cannot delete the rows gone from the source from %: they are still referenced through foreign key % (%). Delete the rows that reference them first, or set "deletes": "ignore" for this table.',
      v_live, quote_ident(v_constraint), v_detail
      USING ERRCODE = '${badStagingData}';
  END;
  RETURN v_deleted;
END
$function$
`;
