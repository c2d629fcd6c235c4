/**
 * `redshift_sync.publish_by_merge(live, staging, key_columns)`: the `merge` strategy's publish
 * step, called by `redshift_sync.swap` in its transaction. Three plain statements make live's
 * rows equal to staging's: DELETE the rows whose key staging lacks, UPDATE the rows whose other
 * values changed, INSERT the rows whose key is new. They take ROW EXCLUSIVE on live, so plain
 * readers never wait, and they see the old rows until commit. No ON CONFLICT (so live needs no
 * unique index) and no MERGE statement (so the SQL runs on Aurora PostgreSQL 16).
 *
 * "Changed" means "would look different". A column is compared with IS DISTINCT FROM when its
 * type's default B-tree equality is image equality (the test B-tree deduplication uses: equal
 * values are identical, e.g. integers, timestamps, uuid; text under the "C" collation). Any
 * other type is compared by its text form: json, xml and point have no equality at all, and
 * numeric (1.5 = 1.50), interval ('1 day' = '24 hours'), float (0 = -0), jsonb, arrays, enums
 * and extension types would otherwise let a visible change through unpublished, for good,
 * since every later run would find the row unchanged too. Keys are matched the same way.
 */
import { SYNC_SQLSTATE } from './sqlstates';

const { badStagingData, strategyNotPossible, invalidArguments } = SYNC_SQLSTATE;

export const PUBLISH_BY_MERGE_SQL = `
CREATE OR REPLACE FUNCTION redshift_sync.publish_by_merge(
  p_live regclass, p_staging regclass, p_key_columns text[])
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Text forms of float values are exact (shortest round-trip) only with extra_float_digits > 0.
SET extra_float_digits = 1
AS $function$
DECLARE
  v_live text;     -- "schema"."table", quoted from the catalog
  v_staging text;
  v_problem text;
  v_column record;
  v_key text;
  v_template text;
  v_key_templates jsonb := '{}';  -- key column name -> comparison template
  v_key_names text[] := '{}';     -- quoted, in key order
  v_key_match text[] := '{}';     -- l.key = s.key, per key column
  v_key_values text[] := '{}';    -- the key's comparison form over s, per key column
  v_null_counts text[] := '{}';
  v_set text[] := '{}';           -- col = s.col, per non-key writable column
  v_changed text[] := '{}';       -- l.col IS DISTINCT FROM s.col, per non-key writable column
  v_columns text[] := '{}';       -- writable columns of live, quoted, in live's order
  v_values text[] := '{}';        -- the same over s: s.col
  v_counts bigint[];
  v_example text;
  v_example_rows bigint;
  v_duplicate_keys bigint;
  v_deleted bigint := 0;
  v_updated bigint := 0;
  v_inserted bigint := 0;
BEGIN
  -- Arguments, and staging's columns against live's (key columns included even if generated):
  -- see publish-checks.ts.
  SELECT c.live, c.staging INTO v_live, v_staging
    FROM redshift_sync.publish_pair('merge', p_live, p_staging, p_key_columns) c;
  IF coalesce(cardinality(p_key_columns), 0) = 0 OR array_position(p_key_columns, NULL) IS NOT NULL THEN
    RAISE EXCEPTION 'cannot merge into %: key columns % are not a list of column names. Set "primaryKey" for this table in the config, or add a primary key to the live table.',
      v_live, coalesce(p_key_columns::text, 'NULL')
      USING ERRCODE = '${invalidArguments}';
  END IF;
  SELECT format('%I', k) INTO v_problem FROM unnest(p_key_columns) k GROUP BY k HAVING count(*) > 1 LIMIT 1;
  IF v_problem IS NOT NULL THEN
    RAISE EXCEPTION 'cannot merge into %: key column % is listed more than once. List each key column once in "primaryKey".', v_live, v_problem
      USING ERRCODE = '${invalidArguments}';
  END IF;

  -- Live's columns with how each is compared: a format() template over (table alias, column).
  FOR v_column IN
    WITH RECURSIVE columns AS (
      SELECT a.attnum, a.attname, a.attgenerated, a.attidentity, a.atttypid
        FROM pg_attribute a
       WHERE a.attrelid = p_live AND a.attnum > 0 AND NOT a.attisdropped
    ), base_types(attnum, type_oid) AS (  -- domains resolved to their base type
      SELECT attnum, atttypid FROM columns
      UNION ALL
      SELECT b.attnum, t.typbasetype FROM base_types b JOIN pg_type t ON t.oid = b.type_oid
       WHERE t.typtype = 'd'
    )
    SELECT c.attname, c.attgenerated, c.attidentity,
           CASE
             WHEN NOT EXISTS (
               SELECT 1
                 FROM pg_opclass oc
                 JOIN pg_am am ON am.oid = oc.opcmethod AND am.amname = 'btree'
                 JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3
                  AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
                 JOIN pg_operator op ON op.oid = ao.amopopr
                  AND op.oprnamespace = 'pg_catalog'::regnamespace
                 JOIN pg_amproc ap ON ap.amprocfamily = oc.opcfamily AND ap.amprocnum = 4
                  AND ap.amproclefttype = oc.opcintype AND ap.amprocrighttype = oc.opcintype
                  AND ap.amproc IN ('pg_catalog.btequalimage'::regproc,
                                    'pg_catalog.btvarstrequalimage'::regproc)
                WHERE oc.opcdefault AND oc.opcintype = b.type_oid)
               THEN '(%1$s.%2$I::pg_catalog.text COLLATE pg_catalog."C")'
             WHEN t.typcollation <> 0 THEN '(%1$s.%2$I COLLATE pg_catalog."C")'
             ELSE '%1$s.%2$I'
           END AS template
      FROM columns c
      JOIN base_types b ON b.attnum = c.attnum
      JOIN pg_type t ON t.oid = b.type_oid AND t.typtype <> 'd'
     ORDER BY c.attnum
  LOOP
    IF v_column.attname = ANY (p_key_columns) THEN
      v_key_templates := v_key_templates || jsonb_build_object(v_column.attname, v_column.template);
    ELSIF v_column.attgenerated = '' THEN
      IF v_column.attidentity = 'a' THEN
        RAISE EXCEPTION 'cannot merge into %: column % is GENERATED ALWAYS AS IDENTITY, which UPDATE cannot set. Make it GENERATED BY DEFAULT (ALTER TABLE % ALTER COLUMN % SET GENERATED BY DEFAULT), make it part of the key, or use strategy "truncate".',
          v_live, format('%I', v_column.attname), v_live, format('%I', v_column.attname)
          USING ERRCODE = '${strategyNotPossible}';
      END IF;
      v_set := v_set || format('%I = s.%I', v_column.attname, v_column.attname);
      v_changed := v_changed || format('%s IS DISTINCT FROM %s',
        format(v_column.template, 'l', v_column.attname), format(v_column.template, 's', v_column.attname));
    END IF;
    IF v_column.attgenerated = '' THEN
      v_columns := v_columns || format('%I', v_column.attname);
      v_values := v_values || format('s.%I', v_column.attname);
    END IF;
  END LOOP;

  FOREACH v_key IN ARRAY p_key_columns LOOP
    v_template := v_key_templates ->> v_key;
    IF v_template IS NULL THEN
      RAISE EXCEPTION 'cannot merge into %: key column % is not a column of the live table. Set "primaryKey" for this table in the config to columns of the live table.', v_live, format('%I', v_key)
        USING ERRCODE = '${invalidArguments}';
    END IF;
    v_key_names := v_key_names || format('%I', v_key);
    v_key_match := v_key_match || format('%s = %s', format(v_template, 'l', v_key), format(v_template, 's', v_key));
    v_key_values := v_key_values || format(v_template, 's', v_key);
    v_null_counts := v_null_counts || format('count(*) FILTER (WHERE s.%I IS NULL)', v_key);
  END LOOP;

  -- Staging's keys must identify its rows: not NULL ...
  EXECUTE format('SELECT ARRAY[%s] FROM %s AS s', array_to_string(v_null_counts, ', '), v_staging)
     INTO v_counts;
  FOR i IN 1 .. cardinality(p_key_columns) LOOP
    IF v_counts[i] > 0 THEN
      RAISE EXCEPTION 'cannot merge % into %: % row(s) of the staging table have NULL in key column %. Key columns must never be NULL: fix the source data, or set "primaryKey" for this table in the config to columns that are never NULL.',
        v_staging, v_live, v_counts[i], format('%I', p_key_columns[i])
        USING ERRCODE = '${badStagingData}';
    END IF;
  END LOOP;
  -- ... and unique.
  EXECUTE format(
    'SELECT left(d.example, 200), d.rows, count(*) OVER ()
       FROM (SELECT concat_ws(%L, %s) AS example, count(*) AS rows
               FROM %s AS s GROUP BY %s HAVING count(*) > 1) d
      LIMIT 1',
    ', ',
    (SELECT string_agg(format('(%s)::pg_catalog.text', v), ', ') FROM unnest(v_key_values) v),
    v_staging,
    array_to_string(v_key_values, ', '))
    INTO v_example, v_example_rows, v_duplicate_keys;
  IF v_example IS NOT NULL THEN
    RAISE EXCEPTION 'cannot merge % into %: % key value(s) occur more than once in the staging table, for example (%)=(%) in % rows. The key must identify one row: fix the source data, or set "primaryKey" for this table in the config to columns that do.',
      v_staging, v_live, v_duplicate_keys, array_to_string(v_key_names, ', '), v_example, v_example_rows
      USING ERRCODE = '${badStagingData}';
  END IF;

  EXECUTE format('DELETE FROM %s AS l WHERE NOT EXISTS (SELECT FROM %s AS s WHERE %s)',
                 v_live, v_staging, array_to_string(v_key_match, ' AND '));
  GET DIAGNOSTICS v_deleted = ROW_COUNT;

  IF cardinality(v_set) > 0 THEN
    EXECUTE format('UPDATE %s AS l SET %s FROM %s AS s WHERE %s AND (%s)',
                   v_live, array_to_string(v_set, ', '), v_staging,
                   array_to_string(v_key_match, ' AND '), array_to_string(v_changed, ' OR '));
    GET DIAGNOSTICS v_updated = ROW_COUNT;
  END IF;

  -- OVERRIDING SYSTEM VALUE: staging's values win over GENERATED ALWAYS AS IDENTITY keys too.
  EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s AS s WHERE NOT EXISTS (SELECT FROM %s AS l WHERE %s)',
                 v_live, array_to_string(v_columns, ', '),
                 array_to_string(v_values, ', '),
                 v_staging, v_live, array_to_string(v_key_match, ' AND '));
  GET DIAGNOSTICS v_inserted = ROW_COUNT;

  RETURN jsonb_build_object('inserted', v_inserted, 'updated', v_updated, 'deleted', v_deleted);
END
$function$
`;
