/**
 * `redshift_sync.merge_rows(live, staging, key_columns, delete_missing)`: what the `merge`
 * strategy (`publish_by_merge`, delete_missing true) and an increment in mode merge
 * (`publish_increment`, false: the delta lacks every unchanged row) share, called by
 * `redshift_sync.swap` in its transaction. Three plain statements make live's rows equal to
 * staging's: DELETE the rows whose key staging lacks (only with delete_missing), UPDATE the
 * rows whose other values changed, INSERT the rows whose key is new. They take ROW EXCLUSIVE on live, so plain
 * readers never wait, and they see the old rows until commit. No ON CONFLICT (so live needs no
 * unique index) and no MERGE statement (so the SQL runs on Aurora PostgreSQL 16).
 * Afterwards live's own rows equal staging's as multisets, or the function fails naming why:
 * NULL or duplicate keys in staging, duplicate keys in live, a constraint of live the data
 * breaks, or unique values moving between rows under a constraint that is not DEFERRABLE.
 *
 * "Changed" means "would look different". A column is compared with IS DISTINCT FROM when its
 * type's default B-tree equality is image equality (the test B-tree deduplication uses: equal
 * values are identical, e.g. integers, timestamps, uuid; text under the "C" collation). Any
 * other type is compared by its text form: json, xml and point have no equality at all, and
 * numeric (1.5 = 1.50), interval ('1 day' = '24 hours'), float (0 = -0), jsonb, arrays, enums
 * and extension types would otherwise let a visible change through unpublished, for good,
 * since every later run would find the row unchanged too. Keys are matched the same way.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

const { badStagingData, strategyNotPossible, invalidArguments } = SYNC_SQLSTATE;

/**
 * The most staging rows whose updated ones merge_rows keeps track of, so that its INSERT need
 * not look them up in live again: their positions take 6 bytes each (6 MB here), in the
 * session's memory. A bigger increment is looked up whole, as before.
 */
export const KEEP_UPDATED_ROWS = 1_000_000;

/**
 * `redshift_sync.column_comparisons(relation)`: per column of a table (in column order), how
 * merge_rows compares its values, as a format() template over (table alias, column name): plain
 * where the type's default B-tree equality is image equality, `COLLATE "C"` for collatable
 * ones, the text form for the rest (see above). Whatever else matches rows by key (the deletes
 * of an increment, ./reconcile-deletes.ts) reads the same templates, so keys equal here are
 * equal there.
 */
const COLUMN_COMPARISONS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.column_comparisons(p_relation regclass)
RETURNS TABLE (attname name, attgenerated "char", attidentity "char", template text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $function$
  WITH RECURSIVE columns AS (
    SELECT a.attnum, a.attname, a.attgenerated, a.attidentity, a.atttypid
      FROM pg_attribute a
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
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
$function$
`;

const MERGE_ROWS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.merge_rows(
  p_live regclass, p_staging regclass, p_key_columns text[], p_delete_missing boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- Text forms of float values are exact (shortest round-trip) only with extra_float_digits > 0.
SET extra_float_digits = 1
AS $function$
DECLARE
  v_live text;     -- "schema"."table", quoted from the catalog
  v_live_rows text; -- live's own rows, for DELETE, UPDATE and the NOT EXISTS tests: see below
  v_staging text;
  v_problem text;
  v_column record;
  v_key text;
  v_template text;
  v_key_templates jsonb := '{}';  -- key column name -> comparison template
  v_key_names text[] := '{}';     -- quoted, in key order
  v_key_match text[] := '{}';     -- l.key = s.key, per key column
  v_key_values text[] := '{}';    -- the key's comparison form over s, per key column
  v_live_key_values text[] := '{}'; -- the same over l
  v_live_key_set text[] := '{}';  -- l.key IS NOT NULL, per key column
  v_null_counts text[] := '{}';
  v_set text[] := '{}';           -- col = s.col, per non-key writable column
  v_changed text[] := '{}';       -- l.col IS DISTINCT FROM s.col, per non-key writable column
  v_columns text[] := '{}';       -- writable columns of live, quoted, in live's order
  v_values text[] := '{}';        -- the same over s: s.col
  v_counts bigint[];
  v_example text;
  v_example_rows bigint;
  v_duplicate_keys bigint;
  v_step text;     -- which statement is running, for the error message
  v_state text;
  v_constraint text;
  v_message text;
  v_detail text;
  v_schema text;
  v_index oid;
  v_index_columns text[];  -- a unique index's key columns or expressions, as SQL
  v_predicate text;
  v_nulls_not_distinct boolean;
  v_deferrable boolean;
  v_deferred text;         -- live's deferrable unique and exclusion constraints, quoted
  v_deleted bigint := 0;
  v_key_index boolean;     -- live has a unique index on key columns, so no duplicate keys
  v_plain_keys boolean := true;  -- every key matched with its type's own =, which an index serves
  v_look_up boolean := false;
  v_keep_updated boolean := false;
  v_hashjoin text := current_setting('enable_hashjoin');
  v_mergejoin text := current_setting('enable_mergejoin');
  v_updated bigint := 0;
  v_updated_rows tid[] := '{}';  -- where in staging the rows UPDATE wrote are (v_keep_updated)
  v_inserted bigint := 0;
BEGIN
  -- Arguments, and staging's columns against live's (key columns included even if generated):
  -- see publish-checks.ts.
  SELECT c.live, c.staging INTO v_live, v_staging
    FROM ${ADMIN_SCHEMA}.publish_pair('merge', p_live, p_staging, p_key_columns) c;
  -- Only live's own rows are staging's to replace. Without ONLY, DELETE and UPDATE also reach
  -- the rows of tables that inherit from live ("If ONLY is not specified, matching rows are also
  -- deleted from any tables inheriting from the named table", DELETE reference), and the
  -- NOT EXISTS tests would match them. A partitioned table has no rows of its own: its
  -- partitions are its storage, so it is named without ONLY.
  SELECT CASE c.relkind WHEN 'p' THEN v_live ELSE 'ONLY ' || v_live END INTO v_live_rows
    FROM pg_class c WHERE c.oid = p_live;
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
  FOR v_column IN SELECT * FROM ${ADMIN_SCHEMA}.column_comparisons(p_live)
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
    v_plain_keys := v_plain_keys AND v_template = '%1$s.%2$I';
    v_key_names := v_key_names || format('%I', v_key);
    v_key_match := v_key_match || format('%s = %s', format(v_template, 'l', v_key), format(v_template, 's', v_key));
    v_key_values := v_key_values || format(v_template, 's', v_key);
    v_live_key_values := v_live_key_values || format(v_template, 'l', v_key);
    v_live_key_set := v_live_key_set || format('l.%I IS NOT NULL', v_key);
    v_null_counts := v_null_counts || format('count(*) FILTER (WHERE s.%I IS NULL)', v_key);
  END LOOP;

  -- Staging's keys must identify its rows: not NULL ... NULL keys are refused rather than
  -- matched with IS NOT DISTINCT FROM: that operator cannot drive a hash or merge join, so every
  -- match would become a nested loop over live, and a NULL identifies nothing (a primary key
  -- column is NOT NULL). Live's rows with a NULL key match no staging row and are deleted.
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

  -- Live's keys must identify its rows too: a key held by two live rows would have both
  -- updated to staging's one row, and live would end with a row too many. Rows with a NULL key
  -- match nothing and are deleted. A valid unique index on (some of) the key columns, without a
  -- predicate, already rules duplicates out; its equality is never finer than the comparison
  -- forms above (equal text forms are equal values), so the scan is skipped then.
  SELECT EXISTS (
    SELECT FROM pg_index i
     WHERE i.indrelid = p_live AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
       AND NOT EXISTS (
         SELECT FROM unnest(i.indkey) WITH ORDINALITY k(attnum, position)
          WHERE k.position <= i.indnkeyatts
            AND NOT EXISTS (SELECT FROM pg_attribute a
                             WHERE a.attrelid = p_live AND a.attnum = k.attnum
                               AND a.attname = ANY (p_key_columns))))
    INTO v_key_index;
  IF NOT v_key_index THEN
    EXECUTE format(
      'SELECT left(d.example, 200), d.rows, count(*) OVER ()
         FROM (SELECT concat_ws(%L, %s) AS example, count(*) AS rows
                 FROM %s AS l WHERE %s GROUP BY %s HAVING count(*) > 1) d
        LIMIT 1',
      ', ',
      (SELECT string_agg(format('(%s)::pg_catalog.text', v), ', ') FROM unnest(v_live_key_values) v),
      v_live_rows, array_to_string(v_live_key_set, ' AND '),
      array_to_string(v_live_key_values, ', '))
      INTO v_example, v_example_rows, v_duplicate_keys;
    IF v_example IS NOT NULL THEN
      RAISE EXCEPTION 'cannot merge % into %: % key value(s) occur more than once in the live table, for example (%)=(%) in % rows, so its rows cannot be matched one to one with staging''s. Delete the extra rows from the live table and add a primary key or unique constraint on (%) so that they cannot come back, set "primaryKey" for this table in the config to columns that identify a row, or use strategy "truncate".',
        v_staging, v_live, v_duplicate_keys, array_to_string(v_key_names, ', '), v_example, v_example_rows,
        array_to_string(v_key_names, ', ')
        USING ERRCODE = '${strategyNotPossible}';
    END IF;
  END IF;

  -- The statements run in a block of their own so that a constraint of live that rejects them
  -- is reported by name, with what to do, instead of as a bare integrity error.
  BEGIN
    IF p_delete_missing THEN
      v_step := 'deleting the rows staging no longer has';
      EXECUTE format('DELETE FROM %s AS l WHERE NOT EXISTS (SELECT FROM %s AS s WHERE %s)',
                     v_live_rows, v_staging, array_to_string(v_key_match, ' AND '));
      GET DIAGNOSTICS v_deleted = ROW_COUNT;
    END IF;

    -- Vanished rows are gone first, so UPDATE and INSERT never collide with them. Between rows
    -- that stay, a value of a unique column can still move (row 1 takes row 2's e-mail and row 2
    -- row 1's): a DEFERRABLE unique constraint is checked at the end of the statement and takes
    -- that, one that is not is checked row by row as UPDATE goes ("Non-Deferred Uniqueness
    -- Constraints", CREATE TABLE reference), which the handler below reports.
    -- An increment is a small part of live: the planner, costing the key lookups as random
    -- reads, would rather hash the delta and scan all of live, once for the UPDATE (2 M rows:
    -- 1.5 s against 0.3 s by key, bench/incremental.ts). Where live's unique index serves the
    -- key match and staging is under a tenth of live, joins by hash or merge are turned off
    -- for these two statements, the documented way to make the planner choose another plan
    -- (https://www.postgresql.org/docs/17/runtime-config-query.html#RUNTIME-CONFIG-QUERY-ENABLE),
    -- and set back after them. Full merges (delete_missing) keep the planner's choice.
    IF NOT p_delete_missing AND v_key_index AND v_plain_keys THEN
      EXECUTE format('SELECT count(*) * 10 < (SELECT c.reltuples FROM pg_class c WHERE c.oid = %s), count(*) <= %s FROM %s',
                     p_live::oid, ${KEEP_UPDATED_ROWS}, v_staging)
         INTO v_look_up, v_keep_updated;
    END IF;
    IF v_look_up THEN
      PERFORM set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
    END IF;
    v_step := 'updating the rows whose values changed';
    IF cardinality(v_set) > 0 AND v_look_up AND v_keep_updated THEN
      -- The staging rows just updated have their key in live: the INSERT below need not look
      -- them up again (20,000 lookups, 0.2 s of a 2 M-row table's increment, each reading the
      -- old and the new row version). Their positions in staging (ctid: staging is locked, so
      -- they stay put) are kept, for at most KEEP_UPDATED_ROWS staging rows.
      EXECUTE format('WITH updated AS (UPDATE %s AS l SET %s FROM %s AS s WHERE %s AND (%s) RETURNING s.ctid AS row) '
                     'SELECT count(*), coalesce(array_agg(row), ''{}'') FROM updated',
                     v_live_rows, array_to_string(v_set, ', '), v_staging,
                     array_to_string(v_key_match, ' AND '), array_to_string(v_changed, ' OR '))
         INTO v_updated, v_updated_rows;
    ELSIF cardinality(v_set) > 0 THEN
      EXECUTE format('UPDATE %s AS l SET %s FROM %s AS s WHERE %s AND (%s)',
                     v_live_rows, array_to_string(v_set, ', '), v_staging,
                     array_to_string(v_key_match, ' AND '), array_to_string(v_changed, ' OR '));
      GET DIAGNOSTICS v_updated = ROW_COUNT;
    END IF;

    -- Live now holds only rows staging holds too, so inserting the rest one by one can only
    -- break a unique constraint that staging itself breaks.
    -- OVERRIDING SYSTEM VALUE: staging's values win over GENERATED ALWAYS AS IDENTITY keys too.
    -- The rows updated above are left out before any lookup, through a hash table over their
    -- positions: PostgreSQL 14 hashes "= ANY (constant array)" (commit 50e17ad28) but not its
    -- negation, which the planner turns into "<> ALL" and reads the whole array for each row
    -- (1.1 s for 20,000 rows on 14); 15 hashes that too
    -- (https://postgrespro.com/list/id/E1m0zBv-0002TB-3O@gemulon.postgresql.org). Hence
    -- IS NOT TRUE, which the planner keeps as it is, and not NOT.
    v_step := 'inserting the rows with new keys';
    EXECUTE format('INSERT INTO %s (%s) OVERRIDING SYSTEM VALUE SELECT %s FROM %s AS s WHERE (s.ctid = ANY ($1)) IS NOT TRUE AND NOT EXISTS (SELECT FROM %s AS l WHERE %s)',
                   v_live, array_to_string(v_columns, ', '),
                   array_to_string(v_values, ', '),
                   v_staging, v_live_rows, array_to_string(v_key_match, ' AND '))
      USING v_updated_rows;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF v_look_up THEN
      PERFORM set_config('enable_hashjoin', v_hashjoin, true),
              set_config('enable_mergejoin', v_mergejoin, true);
    END IF;

    -- An INITIALLY DEFERRED unique or exclusion constraint would be checked only at commit,
    -- outside this block. SET CONSTRAINTS ... IMMEDIATE checks what is pending now ("the new
    -- mode takes effect retroactively", SET CONSTRAINTS reference). Only live's own constraints,
    -- which no later table of the run can satisfy; deferred foreign keys stay deferred.
    v_step := 'checking the unique and exclusion constraints';
    SELECT string_agg(format('%I.%I', n.nspname, con.conname), ', ') INTO v_deferred
      FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
     WHERE con.conrelid = p_live AND con.condeferrable AND con.contype IN ('p', 'u', 'x');
    IF v_deferred IS NOT NULL THEN
      EXECUTE 'SET CONSTRAINTS ' || v_deferred || ' IMMEDIATE';
    END IF;
  EXCEPTION WHEN integrity_constraint_violation THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME,
                            v_schema = SCHEMA_NAME, v_message = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL;
    -- Items the error did not set come back as empty strings.
    v_constraint := nullif(v_constraint, '');
    v_detail := nullif(v_detail, '');
    IF v_state = '23505' THEN
      -- Does staging itself hold a value of this unique index twice? Its key columns and
      -- predicate, as pg_get_indexdef and pg_get_expr print them, read staging's same-named
      -- columns. NULLs are distinct unless the index says NULLS NOT DISTINCT (PostgreSQL 15+;
      -- read through to_jsonb so that the column need not exist).
      SELECT i.indexrelid, pg_get_expr(i.indpred, i.indrelid),
             coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false),
             ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, false) FROM generate_series(1, i.indnkeyatts) k ORDER BY k),
             (SELECT con.condeferrable FROM pg_constraint con
               WHERE con.conindid = i.indexrelid AND con.contype IN ('p', 'u'))
        INTO v_index, v_predicate, v_nulls_not_distinct, v_index_columns, v_deferrable
        FROM pg_index i
       WHERE i.indexrelid = to_regclass(format('%I.%I', v_schema, v_constraint));
      IF v_index IS NOT NULL THEN
        EXECUTE format(
          'SELECT left(concat_ws(%L, %s), 200), count(*) FROM %s WHERE %s GROUP BY %s HAVING count(*) > 1 LIMIT 1',
          ', ',
          (SELECT string_agg(format('coalesce((%s)::pg_catalog.text, %L)', c, 'NULL'), ', ')
             FROM unnest(v_index_columns) c),
          v_staging,
          concat_ws(' AND ', 'true', '(' || v_predicate || ')',
                    CASE WHEN NOT v_nulls_not_distinct THEN
                      (SELECT string_agg(format('(%s) IS NOT NULL', c), ' AND ') FROM unnest(v_index_columns) c)
                    END),
          array_to_string(v_index_columns, ', '))
          INTO v_example, v_example_rows;
        IF v_example IS NOT NULL THEN
          RAISE EXCEPTION 'cannot merge % into %: the staging table holds (%)=(%) in % rows, which unique index % of the live table allows once. Fix the source data.',
            v_staging, v_live, array_to_string(v_index_columns, ', '), v_example, v_example_rows,
            format('%I', v_constraint)
            USING ERRCODE = '${badStagingData}';
        END IF;
        -- v_deferrable is NULL for a unique index that backs no constraint: never deferrable.
        IF v_step LIKE 'updating%' AND NOT coalesce(v_deferrable, false) THEN
          RAISE EXCEPTION 'cannot merge % into %: the new data moves values of unique % % (%) from one row to another (%), and PostgreSQL checks a uniqueness that is not DEFERRABLE row by row as UPDATE goes, not at the end of the statement. Make it a DEFERRABLE unique constraint (%), or use strategy "truncate" or "rename" for this table.',
            v_staging, v_live, CASE WHEN v_deferrable IS NULL THEN 'index' ELSE 'constraint' END,
            format('%I', v_constraint), array_to_string(v_index_columns, ', '),
            coalesce(v_detail, v_message),
            CASE WHEN v_deferrable IS NULL
              THEN format('DROP INDEX %I.%I; ALTER TABLE %s ADD CONSTRAINT %I UNIQUE (%s) DEFERRABLE',
                          v_schema, v_constraint, v_live, v_constraint, array_to_string(v_index_columns, ', '))
              ELSE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I UNIQUE (%s) DEFERRABLE',
                          v_live, v_constraint, v_constraint, array_to_string(v_index_columns, ', '))
            END
            USING ERRCODE = '${strategyNotPossible}';
        END IF;
      END IF;
    END IF;
    IF v_state = '23503' AND v_step LIKE 'deleting%' THEN
      RAISE EXCEPTION 'cannot merge % into %: rows the staging table no longer has are still referenced through foreign key % (%). Keep those rows in the source, or delete the rows that reference them first.',
        v_staging, v_live, quote_ident(v_constraint), coalesce(v_detail, v_message)
        USING ERRCODE = '${badStagingData}';
    END IF;
    RAISE EXCEPTION 'cannot merge % into %: constraint % rejected the staging rows while %: %. Fix the source data so that it satisfies the constraint.',
      v_staging, v_live, coalesce(quote_ident(v_constraint), '(unnamed)'), v_step,
      concat_ws(': ', v_message, v_detail)
      USING ERRCODE = '${badStagingData}';
  END;

  RETURN jsonb_build_object('inserted', v_inserted, 'updated', v_updated, 'deleted', v_deleted);
END
$function$
`;

/** `redshift_sync.publish_by_merge(live, staging, key_columns)`: live's rows become staging's. */
const PUBLISH_BY_MERGE_FUNCTION_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_by_merge(
  p_live regclass, p_staging regclass, p_key_columns text[])
RETURNS jsonb
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $function$
  SELECT ${ADMIN_SCHEMA}.merge_rows(p_live, p_staging, p_key_columns, true)
$function$
`;

export const PUBLISH_BY_MERGE_SQL: readonly string[] = [
  COLUMN_COMPARISONS_SQL,
  MERGE_ROWS_SQL,
  PUBLISH_BY_MERGE_FUNCTION_SQL,
];
