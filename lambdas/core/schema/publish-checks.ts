/**
 * `redshift_sync.publish_pair(strategy, live, staging, key_columns)`: the checks every publish
 * function that copies rows (`publish_by_truncate`, `publish_by_merge`) makes of its arguments
 * before it touches a row. Both arguments given; live and staging are tables, and not the same
 * one; staging has exactly live's columns: every column live is written with (generated columns
 * are computed, unless they are among key_columns, which staging must hold to be matched on),
 * and nothing more, whose data would silently be lost. Returns both tables' names,
 * "schema"."table", quoted from the catalog, for the caller's dynamic SQL.
 *
 * strategy names the calling function in the message for missing arguments:
 * `redshift_sync.publish_by_<strategy>`, or `redshift_sync.publish_increment` for 'increment'
 * (there is no publish_by_increment). The function pins its search_path, so the caller's
 * search_path changes nothing.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

const { stagingColumnsDiffer, invalidArguments } = SYNC_SQLSTATE;

export const PUBLISH_CHECKS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_pair(
  p_strategy text, p_live regclass, p_staging regclass, p_key_columns text[] DEFAULT NULL)
RETURNS TABLE (live text, staging text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_live text;     -- "schema"."table", quoted from the catalog
  v_staging text;
  v_problem text;
BEGIN
  IF p_live IS NULL OR p_staging IS NULL THEN
    RAISE EXCEPTION '${ADMIN_SCHEMA}.% needs a live and a staging table (got live %, staging %)',
      CASE p_strategy WHEN 'increment' THEN 'publish_increment' ELSE 'publish_by_' || p_strategy END,
      coalesce(p_live::text, 'NULL'), coalesce(p_staging::text, 'NULL')
      USING ERRCODE = '${invalidArguments}';
  END IF;
  SELECT format('%I.%I', n.nspname, c.relname) INTO v_live
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_live AND c.relkind IN ('r', 'p');
  IF v_live IS NULL THEN
    RAISE EXCEPTION 'cannot publish into %: it is not a table. Name an existing table as the live table.', p_live
      USING ERRCODE = '${invalidArguments}';
  END IF;
  SELECT format('%I.%I', n.nspname, c.relname) INTO v_staging
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_staging AND c.relkind IN ('r', 'p');
  IF v_staging IS NULL THEN
    RAISE EXCEPTION 'cannot publish into %: staging % is not a table. Load the staging table first.', v_live, p_staging
      USING ERRCODE = '${invalidArguments}';
  END IF;
  IF p_live = p_staging THEN
    RAISE EXCEPTION 'cannot publish % into itself: name a separate staging table.', v_live
      USING ERRCODE = '${invalidArguments}';
  END IF;

  -- Staging must hold every column live is written with (generated columns are computed,
  -- but key columns are matched on) ...
  SELECT string_agg(format('%I', l.attname), ', ' ORDER BY l.attnum) INTO v_problem
    FROM pg_attribute l
   WHERE l.attrelid = p_live AND l.attnum > 0 AND NOT l.attisdropped
     AND (l.attgenerated = '' OR l.attname = ANY (p_key_columns))
     AND NOT EXISTS (
       SELECT 1 FROM pg_attribute s
        WHERE s.attrelid = p_staging AND s.attname = l.attname AND s.attnum > 0 AND NOT s.attisdropped);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'cannot publish % into %: the staging table lacks column(s) % of the live table. Rebuild the staging table with every column of the live table.', v_staging, v_live, v_problem
      USING ERRCODE = '${stagingColumnsDiffer}';
  END IF;
  -- ... and nothing more, whose data would silently be lost.
  SELECT string_agg(format('%I', s.attname), ', ' ORDER BY s.attnum) INTO v_problem
    FROM pg_attribute s
   WHERE s.attrelid = p_staging AND s.attnum > 0 AND NOT s.attisdropped
     AND NOT EXISTS (
       SELECT 1 FROM pg_attribute l
        WHERE l.attrelid = p_live AND l.attname = s.attname AND l.attnum > 0 AND NOT l.attisdropped);
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'cannot publish % into %: the staging table has column(s) % that the live table lacks, so their data would be lost. Add them to the live table or leave them out of staging.', v_staging, v_live, v_problem
      USING ERRCODE = '${stagingColumnsDiffer}';
  END IF;

  live := v_live;
  staging := v_staging;
  RETURN NEXT;
END
$function$
`;
