/**
 * The live table's indexes reproduced on staging, as PL/pgSQL installed in the target database:
 * an index's signature (uniqueness, the constraint it backs, its definition after USING), the
 * pairing of live and staging indexes by signature, and the statements that give staging
 * exactly the live table's indexes before the swap (so the swap only renames them).
 */
import { ADMIN_SCHEMA } from './admin';

/**
 * An index's definition after `USING` (method, columns or expressions, INCLUDE, WITH, WHERE):
 * what is left once its own name and its table's name are taken out.
 */
const INDEX_TAIL_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.index_tail(p_index regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_definition text := pg_get_indexdef(p_index);
  v_prefix text;
BEGIN
  SELECT format('CREATE %sINDEX %I ON %s%I.%I USING ',
                CASE WHEN i.indisunique THEN 'UNIQUE ' END, ic.relname,
                CASE WHEN t.relkind = 'p' THEN 'ONLY ' END, tn.nspname, t.relname)
    INTO v_prefix
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
   WHERE i.indexrelid = p_index;
  IF v_prefix IS NULL OR left(v_definition, length(v_prefix)) <> v_prefix THEN
    RAISE EXCEPTION 'cannot read the definition of index %: %', p_index, v_definition;
  END IF;
  RETURN substr(v_definition, length(v_prefix) + 1);
END
$fn$`;

/**
 * What makes two indexes on different tables copies of each other: uniqueness, the
 * constraint they back (if any), and their definition after USING.
 */
const INDEX_SIGNATURE_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.index_signature(p_index regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT concat_ws(' ',
           CASE con.contype WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique constraint'
                            WHEN 'x' THEN 'exclusion constraint' END,
           CASE WHEN con.condeferrable THEN 'deferrable' END,
           CASE WHEN con.condeferred THEN 'initially deferred' END,
           CASE WHEN i.indisunique THEN 'unique' END,
           ${ADMIN_SCHEMA}.index_tail(p_index))
  FROM pg_index i
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                              AND con.contype IN ('p', 'u', 'x')
  WHERE i.indexrelid = p_index
$fn$`;

/**
 * Pairs each index of one table with the index of another that has the same signature
 * (duplicates paired in name order). Unpaired indexes come with a null on the other side.
 */
const INDEX_PAIRS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.index_pairs(p_live regclass, p_staging regclass)
RETURNS TABLE (live_index name, staging_index name, live_index_oid oid, staging_index_oid oid,
               signature text, is_constraint boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  WITH indexes AS (
    SELECT i.indrelid AS table_oid, c.relname, c.oid,
           ${ADMIN_SCHEMA}.index_signature(c.oid) AS signature,
           EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = c.oid
                     AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')) AS is_constraint
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid IN (p_live, p_staging)
  ), numbered AS (
    SELECT *, row_number() OVER (PARTITION BY table_oid, signature ORDER BY relname) AS n FROM indexes
  )
  SELECT l.relname, s.relname, l.oid, s.oid, coalesce(l.signature, s.signature),
         coalesce(l.is_constraint, s.is_constraint)
  FROM (SELECT * FROM numbered WHERE table_oid = p_live) l
  FULL JOIN (SELECT * FROM numbered WHERE table_oid = p_staging) s
    ON s.signature = l.signature AND s.n = l.n
  ORDER BY coalesce(l.relname, s.relname)
$fn$`;

/**
 * The statements that give staging exactly the live table's indexes (and the constraints they
 * back), under names of its own; and drop staging indexes that match none. Run one per call:
 * an index build on a big table is long, and the RDS Data API cuts a call off at 45 s. Each
 * statement that builds an index comes with that index's name (a constraint's index is named
 * after the constraint), so that a build cut off by the Data API but still running in Aurora
 * can be followed to its end; the statements that drop have none.
 */
const STAGING_INDEX_BUILDS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.staging_index_builds(p_live regclass, p_staging regclass)
RETURNS TABLE (statement text, index_name name)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  WITH pairs AS (
    SELECT p.*, row_number() OVER (ORDER BY p.live_index) AS ordinal
    FROM ${ADMIN_SCHEMA}.index_pairs(p_live, p_staging) p
  ), staging AS (
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = p_staging
  ), builds AS (
    SELECT p.*, (left(s.relname, 50) || '_i' || p.ordinal)::name AS new_index
    FROM pairs p, staging s WHERE p.staging_index IS NULL
  )
  SELECT CASE WHEN p.is_constraint
              THEN format('ALTER TABLE %I.%I DROP CONSTRAINT %I', s.nspname, s.relname, p.staging_index)
              ELSE format('DROP INDEX %I.%I', s.nspname, p.staging_index) END,
         NULL::name
  FROM pairs p, staging s WHERE p.live_index IS NULL
  UNION ALL
  SELECT CASE
           WHEN con.oid IS NOT NULL
           THEN format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', s.nspname, s.relname,
                       b.new_index, pg_get_constraintdef(con.oid))
           ELSE format('CREATE %sINDEX %I ON %I.%I USING %s',
                       CASE WHEN i.indisunique THEN 'UNIQUE ' END,
                       b.new_index, s.nspname, s.relname,
                       ${ADMIN_SCHEMA}.index_tail(b.live_index_oid))
         END,
         b.new_index
  FROM builds b
  JOIN pg_index i ON i.indexrelid = b.live_index_oid
  LEFT JOIN pg_constraint con ON con.conindid = b.live_index_oid AND con.conrelid = p_live
                              AND con.contype IN ('p', 'u', 'x')
  CROSS JOIN staging s
$fn$`;

export const INDEX_FUNCTIONS_SQL: readonly string[] = [
  INDEX_TAIL_SQL,
  INDEX_SIGNATURE_SQL,
  INDEX_PAIRS_SQL,
  STAGING_INDEX_BUILDS_SQL,
];
