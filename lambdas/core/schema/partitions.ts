/**
 * Partitioned live tables, as PL/pgSQL installed in the target database: a partitioned table
 * is published partition by partition (see docs/design.md, "Partitioned tables").
 *
 * - `partitions(parent)`: its partitions with their bounds, DEFAULT and pending detaches;
 * - `partition_changes(parent, staging)`: per partition, whether staging's rows in its range
 *   are exactly the partition's rows (count and two 64-bit hash sums of each row's text), and
 *   the rows of staging that no partition takes;
 * - `build_partition_replacement(...)`: a table LIKE a partition, filled from staging's rows in
 *   its range, with a CHECK equal to the partition's constraint so that ATTACH need not scan;
 * - `publish_partitions(parent, partitions, run id)`: inside the swap, each changed partition
 *   detached, replaced by rename (which carries grants, comments, indexes and views) and its
 *   replacement attached with the old bounds, in the swap's one transaction;
 * - `finish_pending_detaches(parent)`: DETACH ... FINALIZE for a detach a dead session left.
 *
 * The partition constraint (pg_get_partition_constraintdef) names the columns unqualified, so
 * the same text filters staging, which has the parent's columns (staging is LIKE the parent).
 * Dynamic SQL is built with format('%I', '%s') from catalog data only.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

/** The constraint a replacement carries until it is attached (then dropped): its bounds. */
export const BOUNDS_CHECK_NAME = 'redshift_sync_partition_bounds';

const PARTITIONS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.partitions(p_parent regclass)
RETURNS TABLE (partition_schema name, partition_name name, bound text, is_default boolean,
               detach_pending boolean, sub_partitioned boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
-- Bounds on a timestamptz key print in the session's time zone: always UTC here, as in
-- outside_buckets and create_partition, so that days and months mean the same in all three.
SET timezone = 'UTC'
AS $fn$
  SELECT n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid),
         pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', i.inhdetachpending, c.relkind = 'p'
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE i.inhparent = p_parent
  ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
$fn$`;

/** The parent's columns, quoted, in its order: what a row's text is made of on both sides. */
const PARTITION_COLUMNS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.partition_columns(p_parent regclass, p_writable boolean)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
  FROM pg_attribute a
  WHERE a.attrelid = p_parent AND a.attnum > 0 AND NOT a.attisdropped
    AND (NOT p_writable OR a.attgenerated = '')
$fn$`;

/**
 * The condition (over the parent's columns) that holds for a row no partition takes: none of
 * the partitions' constraints holds. 'true' when there is no partition.
 */
const OUTSIDE_CONDITION_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.partition_outside_condition(p_parent regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT coalesce(string_agg(format('NOT coalesce((%s), false)', pg_get_partition_constraintdef(i.inhrelid)),
                             ' AND ' ORDER BY i.inhrelid), 'true')
  FROM pg_inherits i WHERE i.inhparent = p_parent AND NOT i.inhdetachpending
$fn$`;

/**
 * The partition key when it is one column of type date, timestamp or timestamptz under RANGE
 * partitioning: the case where a missing day or month can be created. No row otherwise.
 */
const PARTITION_KEY_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.partition_range_column(p_parent regclass)
RETURNS TABLE (column_name name, type_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT a.attname, format_type(a.atttypid, NULL)
  FROM pg_partitioned_table pt
  JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
  WHERE pt.partrelid = p_parent AND pt.partstrat = 'r' AND pt.partnatts = 1
    AND a.atttypid IN ('date'::regtype, 'timestamp'::regtype, 'timestamptz'::regtype)
$fn$`;

/**
 * The days ('day') or months ('month') of the range column, as 'YYYY-MM-DD' (a month by its
 * first day), of staging's rows that no partition takes; in UTC for timestamptz.
 */
const OUTSIDE_BUCKETS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.outside_buckets(p_parent regclass, p_staging regclass, p_unit text)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $fn$
DECLARE
  v_column name := (SELECT k.column_name FROM ${ADMIN_SCHEMA}.partition_range_column(p_parent) k);
BEGIN
  IF v_column IS NULL OR p_unit NOT IN ('day', 'month') THEN
    RAISE EXCEPTION '% has no range column of a date or time type, or % is not day or month', p_parent, p_unit
      USING ERRCODE = '${SYNC_SQLSTATE.invalidArguments}';
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT DISTINCT to_char(date_trunc(%L, %I), ''YYYY-MM-DD'') FROM %s WHERE %I IS NOT NULL AND %s ORDER BY 1',
    p_unit, v_column, p_staging, v_column, ${ADMIN_SCHEMA}.partition_outside_condition(p_parent));
END
$fn$`;

/**
 * A new, empty partition of p_parent for [p_from, p_to), named p_name in the parent's schema,
 * made LIKE p_template (a neighbouring partition) with its owner and grants. Attaching an empty
 * table changes nothing a reader sees (no rows had that range), and takes SHARE UPDATE
 * EXCLUSIVE on the parent, which conflicts with no reader or writer, and ACCESS EXCLUSIVE on the
 * new table only (https://www.postgresql.org/docs/current/sql-altertable.html, ATTACH
 * PARTITION); CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE on the parent. The swap
 * then fills it as any changed partition. Waits at most p_lock_timeout_ms for its locks.
 */
const CREATE_PARTITION_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.create_partition(
  p_parent regclass, p_template regclass, p_name name, p_from text, p_to text, p_lock_timeout_ms integer)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET timezone = 'UTC'
AS $fn$
DECLARE
  v_schema name := (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = p_parent);
  v_owner name := (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = p_template);
  v_new regclass;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = p_template AND i.inhparent = p_parent) THEN
    RAISE EXCEPTION '% is not a partition of %', p_template, p_parent USING ERRCODE = '${SYNC_SQLSTATE.invalidArguments}';
  END IF;
  PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
  EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
                 'INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS)', v_schema, p_name, p_template);
  v_new := format('%I.%I', v_schema, p_name)::regclass;
  EXECUTE format('ALTER TABLE %s OWNER TO %I', v_new, v_owner);
  PERFORM ${ADMIN_SCHEMA}.copy_privileges(p_template, v_new);
  EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', p_parent, v_new, p_from, p_to);
  RETURN v_new::text;
END
$fn$`;

/**
 * Per partition: its rows and staging's rows in its range, and whether they differ. A row is
 * compared by its text (ROW(columns)::text over the parent's columns, so a partition whose
 * columns sit in another physical order compares the same): equal partitions have equal
 * counts and equal sums of hashtextextended over the rows' texts with two seeds. Rows of
 * staging that no partition's constraint takes come back as one row with a null partition,
 * their count, and the range of the partition key over them.
 */
const PARTITION_CHANGES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.partition_changes(p_parent regclass, p_staging regclass)
RETURNS TABLE (partition_schema name, partition_name name, staging_rows bigint, live_rows bigint,
               changed boolean, key_range text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_columns text := ${ADMIN_SCHEMA}.partition_columns(p_parent, false);
  v_figures text := format('count(*), coalesce(sum(hashtextextended(ROW(%1$s)::text, 0)::numeric), 0),
                            coalesce(sum(hashtextextended(ROW(%1$s)::text, 1)::numeric), 0)', v_columns);
  v_route text;
  v_staging jsonb;
  v_live jsonb;
  v_partition record;
  v_empty jsonb := '[0, "0", "0"]';
  v_key text;
BEGIN
  -- One pass over staging, each row routed to the partition whose constraint it meets (a
  -- CASE over their constraints; NULL when none does), and one over live, grouped by
  -- partition (tableoid): not one scan per partition.
  SELECT coalesce('CASE ' || string_agg(format('WHEN coalesce((%s), false) THEN %s',
                                               coalesce(pg_get_partition_constraintdef(i.inhrelid), 'true'),
                                               i.inhrelid), ' ' ORDER BY i.inhrelid) || ' END', 'NULL::oid')
    INTO v_route
    FROM pg_inherits i WHERE i.inhparent = p_parent AND NOT i.inhdetachpending;
  EXECUTE format('SELECT coalesce(jsonb_object_agg(coalesce(f.p::text, %L), jsonb_build_array(f.n, f.h0::text, f.h1::text)), %L)
                  FROM (SELECT %s AS p, %s FROM %s GROUP BY 1) f (p, n, h0, h1)',
                 'outside', '{}', v_route, v_figures, p_staging)
    INTO v_staging;
  EXECUTE format('SELECT coalesce(jsonb_object_agg(f.p::text, jsonb_build_array(f.n, f.h0::text, f.h1::text)), %L)
                  FROM (SELECT tableoid::oid, %s FROM %s GROUP BY 1) f (p, n, h0, h1)',
                 '{}', v_figures, p_parent)
    INTO v_live;
  FOR v_partition IN
    SELECT c.oid::text AS id, n.nspname, c.relname
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE i.inhparent = p_parent AND NOT i.inhdetachpending
    ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
  LOOP
    partition_schema := v_partition.nspname;
    partition_name := v_partition.relname;
    staging_rows := (coalesce(v_staging -> v_partition.id, v_empty) ->> 0)::bigint;
    live_rows := (coalesce(v_live -> v_partition.id, v_empty) ->> 0)::bigint;
    changed := coalesce(v_staging -> v_partition.id, v_empty) <> coalesce(v_live -> v_partition.id, v_empty);
    key_range := NULL;
    RETURN NEXT;
  END LOOP;
  partition_schema := NULL;
  partition_name := NULL;
  live_rows := NULL;
  changed := NULL;
  staging_rows := (coalesce(v_staging -> 'outside', v_empty) ->> 0)::bigint;
  key_range := NULL;
  IF staging_rows > 0 THEN
    -- The partition key's columns and expressions, as the parent declares them.
    SELECT substring(pg_get_partkeydef(p_parent) FROM '\\((.*)\\)$') INTO v_key;
    EXECUTE format('SELECT min(ROW(%1$s)::text) || '' to '' || max(ROW(%1$s)::text) FROM %2$s WHERE %3$s',
                   v_key, p_staging, ${ADMIN_SCHEMA}.partition_outside_condition(p_parent))
      INTO key_range;
  END IF;
  RETURN NEXT;
END
$fn$`;

/**
 * Builds p_replacement (in the staging schema, by the pipeline) LIKE p_partition, filled with
 * staging's rows in the partition's range, and with a CHECK equal to the partition's
 * constraint: "the scan of the table being attached can be avoided by adding a valid CHECK
 * constraint to it that allows only rows satisfying the desired partition constraint"
 * (https://www.postgresql.org/docs/current/ddl-partitioning.html#DDL-PARTITIONING-DECLARATIVE-MAINTENANCE).
 * No indexes yet: they are built after the load, as for staging (faster than maintaining them).
 */
const BUILD_REPLACEMENT_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.build_partition_replacement(
  p_partition regclass, p_staging regclass, p_schema name, p_name name)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_parent regclass;
  v_condition text := pg_get_partition_constraintdef(p_partition);
  v_columns text;
  v_rows bigint;
BEGIN
  SELECT i.inhparent INTO v_parent FROM pg_inherits i WHERE i.inhrelid = p_partition;
  IF v_parent IS NULL THEN
    RAISE EXCEPTION '% is not a partition', p_partition USING ERRCODE = '${SYNC_SQLSTATE.invalidArguments}';
  END IF;
  v_columns := ${ADMIN_SCHEMA}.partition_columns(v_parent, true);
  EXECUTE format('DROP TABLE IF EXISTS %I.%I', p_schema, p_name);
  EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED '
                 'INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS)', p_schema, p_name, p_partition);
  EXECUTE format('INSERT INTO %I.%I (%s) SELECT %s FROM %s WHERE coalesce((%s), false)',
                 p_schema, p_name, v_columns, v_columns, p_staging, coalesce(v_condition, 'true'));
  GET DIAGNOSTICS v_rows = ROW_COUNT;
  PERFORM ${ADMIN_SCHEMA}.add_bounds_check(p_partition, format('%I.%I', p_schema, p_name)::regclass);
  RETURN v_rows;
END
$fn$`;

/**
 * Gives p_table a CHECK equal to p_partition's partition constraint (replacing one it had), so
 * that attaching p_table with p_partition's bounds needs no scan. A partition whose constraint
 * is empty (the only partition, a DEFAULT alone) gets none.
 */
const ADD_BOUNDS_CHECK_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.add_bounds_check(p_partition regclass, p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_condition text := pg_get_partition_constraintdef(p_partition);
BEGIN
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS ${BOUNDS_CHECK_NAME}', p_table);
  IF v_condition IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT ${BOUNDS_CHECK_NAME} CHECK (%s)', p_table, v_condition);
  END IF;
END
$fn$`;

/**
 * Publishes the changed partitions of p_parent; the swap holds ACCESS EXCLUSIVE on the parent,
 * on each partition and on each replacement. For each: DETACH (plain, not CONCURRENTLY: that
 * "cannot be run in a transaction block", and ours must stay one transaction so that no reader
 * sees the range missing), publish_by_rename (the replacement takes the partition's name,
 * grants, owner, comments, indexes and views; the partition is retired under p_retired_name),
 * then ATTACH with the old bounds, read from the catalog, and the bounds CHECK dropped: ATTACH
 * proved the bounds with it and the partition constraint holds from now on.
 * Lock levels (https://www.postgresql.org/docs/current/sql-altertable.html): ATTACH PARTITION
 * takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the attached table (and on
 * a DEFAULT partition); DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the
 * parent, which is why the swap takes that lock up front, under lock_timeout.
 */
const PUBLISH_PARTITIONS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_partitions(
  p_parent regclass, p_partitions jsonb, p_run_id text)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_entry jsonb;
  v_partition regclass;
  v_replacement regclass;
  v_schema name;
  v_name name;
  v_bound text;
  v_result jsonb;
  v_results jsonb := '[]';
BEGIN
  FOR v_entry IN SELECT e FROM jsonb_array_elements(p_partitions) e LOOP
    v_schema := v_entry -> 'partition' ->> 'schema';
    v_name := v_entry -> 'partition' ->> 'name';
    v_partition := to_regclass(format('%I.%I', v_schema, v_name));
    v_replacement := to_regclass(format('%I.%I', v_entry -> 'replacement' ->> 'schema',
                                        v_entry -> 'replacement' ->> 'name'));
    SELECT pg_get_expr(c.relpartbound, c.oid) INTO v_bound
      FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = p_parent
     WHERE c.oid = v_partition AND NOT i.inhdetachpending;
    IF v_bound IS NULL OR v_replacement IS NULL THEN
      RAISE EXCEPTION '%.% is not a partition of % with a replacement %.%', quote_ident(v_schema), quote_ident(v_name),
        p_parent, quote_ident(v_entry -> 'replacement' ->> 'schema'), quote_ident(v_entry -> 'replacement' ->> 'name')
        USING ERRCODE = '${SYNC_SQLSTATE.stagingMissing}';
    END IF;
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', p_parent, v_partition);
    v_result := ${ADMIN_SCHEMA}.publish_by_rename(v_schema, v_name, v_replacement,
                                                  v_entry ->> 'retiredName', p_run_id);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I %s', p_parent, v_schema, v_name, v_bound);
    EXECUTE format('ALTER TABLE %I.%I DROP CONSTRAINT IF EXISTS ${BOUNDS_CHECK_NAME}', v_schema, v_name);
    v_results := v_results || jsonb_build_object('partition', v_entry -> 'partition', 'bound', v_bound,
                                                 'result', v_result);
  END LOOP;
  RETURN jsonb_build_object('partitionsReplaced', v_results);
END
$fn$`;

/**
 * Finishes the detaches of p_parent's partitions that a dead session left half done
 * (pg_inherits.inhdetachpending, PostgreSQL 14+): "If FINALIZE is specified, a previous
 * DETACH CONCURRENTLY invocation that was canceled or interrupted is completed"
 * (https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DETACH-PARTITION).
 * While one is pending, no other partition of the table can be detached. Waits at most
 * p_lock_timeout_ms for each lock. Returns the partitions finished.
 */
const FINISH_PENDING_DETACHES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.finish_pending_detaches(p_parent regclass, p_lock_timeout_ms integer)
RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_partition regclass;
BEGIN
  PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
  FOR v_partition IN
    SELECT i.inhrelid::regclass FROM pg_inherits i WHERE i.inhparent = p_parent AND i.inhdetachpending
  LOOP
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', p_parent, v_partition);
    RETURN NEXT v_partition::text;
  END LOOP;
END
$fn$`;

export const PARTITION_FUNCTIONS_SQL: readonly string[] = [
  PARTITIONS_SQL,
  PARTITION_COLUMNS_SQL,
  OUTSIDE_CONDITION_SQL,
  PARTITION_KEY_SQL,
  OUTSIDE_BUCKETS_SQL,
  CREATE_PARTITION_SQL,
  PARTITION_CHANGES_SQL,
  ADD_BOUNDS_CHECK_SQL,
  BUILD_REPLACEMENT_SQL,
  PUBLISH_PARTITIONS_SQL,
  FINISH_PENDING_DETACHES_SQL,
];
