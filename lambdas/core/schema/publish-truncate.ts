/**
 * `redshift_sync.publish_by_truncate(live, staging)`: the `truncate` strategy's publish step,
 * called by `redshift_sync.swap` once it holds the run's locks. TRUNCATE live, then INSERT every
 * row of staging. Live keeps its OID, so every view, grant, comment, policy, trigger and index
 * stays as it is; the price is ACCESS EXCLUSIVE on live (plain readers wait) until commit.
 *
 * Names only reach the dynamic SQL quoted by format('%I') from the catalog, and the function
 * pins its search_path, so the caller's search_path changes nothing.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

/**
 * SQLSTATEs (class `RS`) raised by the publish functions, so that callers can tell a refusal
 * from a lock timeout (55P03) or a deadlock (40P01). Retrying does not help with any of them.
 * RS001 matches `SYNC_SQLSTATE.badStagingData`; the others are in RS1xx, which the swap's
 * error handling reports as preflight refusals (nothing was changed).
 */

const { strategyNotPossible } = SYNC_SQLSTATE;

export const PUBLISH_BY_TRUNCATE_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_by_truncate(p_live regclass, p_staging regclass)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_live text;     -- "schema"."table", quoted from the catalog
  v_staging text;
  v_columns text;  -- live's writable columns, quoted, in live's order
  v_problem text;
  v_kind "char";
  v_rows bigint;
BEGIN
  -- Arguments, and staging's columns against live's: see publish-checks.ts.
  SELECT c.live, c.staging INTO v_live, v_staging
    FROM ${ADMIN_SCHEMA}.publish_pair('truncate', p_live, p_staging) c;

  -- TRUNCATE of a partitioned table empties every partition, and TRUNCATE ONLY of one is an
  -- error ("cannot truncate only a partitioned table"). Publishing into partitioned tables
  -- is a later feature; merge already publishes into them row by row.
  SELECT c.relkind INTO v_kind FROM pg_class c WHERE c.oid = p_live;
  IF v_kind = 'p' THEN
    RAISE EXCEPTION 'cannot publish into % by truncate: it is a partitioned table, and strategy "truncate" does not publish into partitioned tables. Use the default strategy "rename" (partition by partition) or "merge" for this table.', v_live
      USING ERRCODE = '${strategyNotPossible}';
  END IF;

  -- TRUNCATE refuses a table other tables reference, with a hint (CASCADE) that would empty them too.
  SELECT format('constraint %I of table %I.%I', con.conname, n.nspname, c.relname) INTO v_problem
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE con.contype = 'f' AND con.confrelid = p_live AND con.conrelid <> p_live
   ORDER BY n.nspname, c.relname, con.conname
   LIMIT 1;
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'cannot publish into % by truncate: foreign key % references it, and TRUNCATE cannot empty a referenced table. Use strategy "merge" for this table.', v_live, v_problem
      USING ERRCODE = '${strategyNotPossible}';
  END IF;

  SELECT string_agg(format('%I', l.attname), ', ' ORDER BY l.attnum) INTO v_columns
    FROM pg_attribute l
   WHERE l.attrelid = p_live AND l.attnum > 0 AND NOT l.attisdropped AND l.attgenerated = '';
  IF v_columns IS NULL THEN
    RAISE EXCEPTION 'cannot publish into %: it has no column that can be written.', v_live
      USING ERRCODE = '${strategyNotPossible}';
  END IF;

  -- ONLY: without it TRUNCATE empties the tables that inherit from live too ("If ONLY is not
  -- specified, the table and all its descendant tables (if any) are truncated", TRUNCATE
  -- reference); their rows are not staging's to replace. INSERT writes into live alone, never
  -- into a child. So after the swap a plain SELECT from live shows staging's rows and, as
  -- inheritance does, the children's rows too; SELECT ... FROM ONLY live shows staging's alone.
  EXECUTE format('TRUNCATE ONLY %s', v_live);
  -- OVERRIDING SYSTEM VALUE: staging's values win over GENERATED ALWAYS AS IDENTITY columns too.
  EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s',
                 v_live, v_columns, v_columns, v_staging);
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  RETURN jsonb_build_object('rows', v_rows);
END
$function$
`;
