/**
 * The whole-table proof of an increment, inside the swap's transaction:
 * - `redshift_sync.figures_of(relation, columns)` computes a table's figures with the same
 *   select list as buildFiguresQuery (../transfer/figures.ts) builds in TypeScript, from a
 *   plan's column list (`[{"name", "figures"}]`, names used only through format('%I')), and
 *   returns them as one jsonb object keyed as that query's columns (row_count, c0_nulls, ...);
 *   a contract test holds the two to the same results;
 * - `redshift_sync.check_increment(live, proof)` compares live's figures, after the increment
 *   was applied, with the source's whole-table figures of the unload snapshot
 *   (`{"cursor", "columns", "figures"}`), and raises RS002 naming each figure that differs, so
 *   that the swap rolls back and live stays as it was; a source whose cursor is NULL in some
 *   rows is refused first, by the cursor's name (no delta filter can send such a row).
 * Counts are compared as numbers (a sum over no rows is NULL on one side and 0 once parsed on
 * the other), float minima and maxima at the digits Redshift prints (6 and 15 significant, as
 * the quality gate in ../load/quality-gate.ts does), everything else as exact text.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

const { incrementMismatch, invalidArguments } = SYNC_SQLSTATE;

const FIGURES_OF_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.figures_of(p_relation regclass, p_columns jsonb)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
-- What CAST(float AS VARCHAR) prints depends on it: the shortest exact form, whoever calls.
SET extra_float_digits = 1
AS $function$
DECLARE
  v_relation text;
  v_list text[] := ARRAY['CAST(COUNT(*) AS VARCHAR(100)) AS row_count'];
  v_column jsonb;
  v_index integer := 0;
  v_name text;
  v_kind text;
  v_min text;
  v_max text;
  v_result jsonb;
  c_pattern constant text := '''YYYY-MM-DD HH24:MI:SS.US''';
BEGIN
  -- Only the table's own rows, as merge_rows publishes them; a partitioned table's are its partitions'.
  SELECT CASE c.relkind WHEN 'p' THEN '' ELSE 'ONLY ' END || format('%I.%I', n.nspname, c.relname)
    INTO v_relation
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = p_relation AND c.relkind IN ('r', 'p');
  IF v_relation IS NULL OR jsonb_typeof(p_columns) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION '${ADMIN_SCHEMA}.figures_of needs a table and a list of columns (got %, %)',
      coalesce(p_relation::text, 'NULL'), coalesce(p_columns::text, 'NULL')
      USING ERRCODE = '${invalidArguments}';
  END IF;
  FOR v_column IN SELECT c FROM jsonb_array_elements(p_columns) c LOOP
    v_name := format('%I', v_column ->> 'name');
    v_kind := v_column ->> 'figures';
    v_list := v_list || format('CAST(COUNT(*) - COUNT(%s) AS VARCHAR(100)) AS c%s_nulls', v_name, v_index);
    v_min := CASE
      WHEN v_kind IN ('integer', 'decimal', 'float4', 'float8') THEN format('CAST(MIN(%s) AS VARCHAR(100))', v_name)
      WHEN v_kind = 'date' THEN format('TO_CHAR(MIN(%s), ''YYYY-MM-DD'')', v_name)
      WHEN v_kind = 'timestamp' THEN format('TO_CHAR(MIN(%s), %s)', v_name, c_pattern)
      WHEN v_kind = 'timestamptz' THEN format('TO_CHAR(MIN(%s) AT TIME ZONE ''UTC'', %s)', v_name, c_pattern)
    END;
    IF v_min IS NOT NULL THEN
      v_max := replace(v_min, 'MIN(', 'MAX(');
      v_list := v_list || format('%s AS c%s_min', v_min, v_index) || format('%s AS c%s_max', v_max, v_index);
    ELSIF v_kind = 'octets' THEN
      v_list := v_list || format('CAST(SUM(OCTET_LENGTH(%s)) AS VARCHAR(100)) AS c%s_octets', v_name, v_index);
    ELSIF v_kind = 'boolean' THEN
      v_list := v_list || format('CAST(SUM(CASE WHEN %s THEN 1 ELSE 0 END) AS VARCHAR(100)) AS c%s_trues', v_name, v_index);
    ELSIF v_kind IS DISTINCT FROM 'nulls' THEN
      RAISE EXCEPTION '${ADMIN_SCHEMA}.figures_of: column % has unknown figure kind %', v_name, coalesce(v_kind, 'NULL')
        USING ERRCODE = '${invalidArguments}';
    END IF;
    v_index := v_index + 1;
  END LOOP;
  EXECUTE format('SELECT to_jsonb(f) FROM (SELECT %s FROM %s) f', array_to_string(v_list, ', '), v_relation)
     INTO v_result;
  RETURN v_result;
END
$function$
`;

/** A float's text at `digits` significant digits, as floatText in ../load/quality-gate.ts. */
const FLOAT_TEXT_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.float_text(p_value text, p_digits integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $function$
  SELECT CASE
    WHEN p_value IS NULL THEN NULL
    WHEN lower(btrim(p_value)) IN ('nan') THEN 'NaN'
    WHEN lower(btrim(p_value)) IN ('inf', 'infinity', '+inf', '+infinity') THEN 'Infinity'
    WHEN lower(btrim(p_value)) IN ('-inf', '-infinity') THEN '-Infinity'
    WHEN btrim(p_value)::numeric = 0 THEN '0'
    -- Read as numeric, not float8: the digits Redshift prints can round past the largest
    -- double (1.79769313486232e+308). FM does not combine with EEEE: the sign's blank is trimmed.
    ELSE btrim(to_char(btrim(p_value)::numeric, '9.' || repeat('9', p_digits - 1) || 'EEEE'))
  END
$function$
`;

const CHECK_INCREMENT_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.check_increment(p_live regclass, p_proof jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
  v_live jsonb := ${ADMIN_SCHEMA}.figures_of(p_live, p_proof -> 'columns');
  v_figure record;
  v_match text[];
  v_column jsonb;
  v_label text;
  v_live_value text;
  v_same boolean;
  v_differences text[] := '{}';
  v_name text;
  v_cursor_nulls_key text;
  v_cursor_nulls text;
BEGIN
  -- Quoted always, as quoteQualified writes it, so that the pipeline can tell which table failed.
  SELECT '"' || replace(n.nspname, '"', '""') || '"."' || replace(c.relname, '"', '""') || '"' INTO v_name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_live;
  -- A row whose cursor is NULL matches no delta filter: inserted so, or updated to it, it never
  -- comes. Said as such, not as the figures it happens to move.
  SELECT format('c%s_nulls', c.ordinality - 1) INTO v_cursor_nulls_key
    FROM jsonb_array_elements(p_proof -> 'columns') WITH ORDINALITY c(value, ordinality)
   WHERE c.value ->> 'name' = p_proof ->> 'cursor';
  v_cursor_nulls := coalesce(p_proof -> 'figures' ->> v_cursor_nulls_key, '0');
  IF v_cursor_nulls::numeric > 0 THEN
    RAISE EXCEPTION 'the increment of % was not applied: its cursor % is NULL in % % of the source table (% in live), and an increment never sends a row whose cursor is NULL (inserted with NULL, or updated to NULL). Make % NOT NULL in the source (fill its NULLs, e.g. with the row''s creation time, and set it on every insert and update), or name a cursor that is never NULL; until then every run of this table is full.',
      v_name, quote_ident(p_proof ->> 'cursor'), v_cursor_nulls,
      CASE WHEN v_cursor_nulls::numeric = 1 THEN 'row' ELSE 'rows' END,
      coalesce(v_live ->> v_cursor_nulls_key, '0'),
      quote_ident(p_proof ->> 'cursor')
      USING ERRCODE = '${incrementMismatch}';
  END IF;
  FOR v_figure IN SELECT key, value FROM jsonb_each_text(p_proof -> 'figures') ORDER BY key LOOP
    v_live_value := v_live ->> v_figure.key;
    v_match := regexp_match(v_figure.key, '^c([0-9]+)_([a-z]+)$');
    v_column := CASE WHEN v_match IS NULL THEN NULL ELSE p_proof -> 'columns' -> (v_match[1]::integer) END;
    IF v_figure.key = 'row_count' OR v_match[2] IN ('nulls', 'octets', 'trues') THEN
      v_same := coalesce(v_figure.value, '0')::numeric = coalesce(v_live_value, '0')::numeric;
    ELSIF v_column ->> 'figures' IN ('float4', 'float8') THEN
      v_same := ${ADMIN_SCHEMA}.float_text(v_figure.value, CASE v_column ->> 'figures' WHEN 'float4' THEN 6 ELSE 15 END)
                IS NOT DISTINCT FROM
                ${ADMIN_SCHEMA}.float_text(v_live_value, CASE v_column ->> 'figures' WHEN 'float4' THEN 6 ELSE 15 END);
    ELSE
      v_same := v_figure.value IS NOT DISTINCT FROM v_live_value;
    END IF;
    IF NOT v_same THEN
      v_label := CASE WHEN v_column IS NULL THEN 'rows'
                      ELSE format('%I: %s', v_column ->> 'name',
                                  CASE v_match[2] WHEN 'nulls' THEN 'NULL count' WHEN 'octets' THEN 'total bytes'
                                                  WHEN 'trues' THEN 'true count' ELSE v_match[2] END) END;
      v_differences := v_differences || format('%s: %s in Redshift, %s in live', v_label,
        coalesce(v_figure.value, 'NULL'), coalesce(v_live_value, 'NULL'));
    END IF;
  END LOOP;
  IF cardinality(v_differences) > 0 THEN
    RAISE EXCEPTION 'the increment of % was not applied: with it, the live table would not match the whole source table in the same snapshot (%). A cursor value went backwards, rows were deleted from the source, or the live table was changed by someone else; the next run of this table is a full refresh.',
      v_name, array_to_string(v_differences, '; ')
      USING ERRCODE = '${incrementMismatch}';
  END IF;
END
$function$
`;

export const INCREMENT_PROOF_SQL: readonly string[] = [
  FIGURES_OF_SQL,
  FLOAT_TEXT_SQL,
  CHECK_INCREMENT_SQL,
];
