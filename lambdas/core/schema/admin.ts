/**
 * The schemas the pipeline owns in the target database, and its control table of retired
 * versions. Names are fixed: the installed functions refer to them directly.
 */

/** Functions and control tables. */
export const ADMIN_SCHEMA = 'redshift_sync';
/** Staging tables, one per table of a run, dropped or published at the end of the run. */
export const STAGING_SCHEMA = 'redshift_sync_staging';
/** Previous versions of live tables replaced by `rename`, kept for rollback. */
export const RETIRED_SCHEMA = 'redshift_sync_retired';

/**
 * What each control table is for. Not a COMMENT: Aurora PostgreSQL Limitless Database does not
 * support COMMENT
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-reference.DDL-support.html),
 * so the install keeps the descriptions in a table, the same on every cluster:
 * `SELECT * FROM redshift_sync.descriptions`.
 */
export const DESCRIPTIONS_SQL = `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.descriptions (
    object text PRIMARY KEY,
    description text NOT NULL
  )`;

/** The statement recording what control table `table` (of the admin schema) is for. */
export function describeTable(table: string, description: string): string {
  return `INSERT INTO ${ADMIN_SCHEMA}.descriptions (object, description)
    VALUES ('${ADMIN_SCHEMA}.${table}', '${description.replaceAll("'", "''")}')
    ON CONFLICT (object) DO UPDATE SET description = excluded.description`;
}

/**
 * A sequence for a control table's `id`. Not an identity column: Limitless does not support
 * IDENTITY columns in CREATE TABLE
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-reference.DDL-limitations.html).
 * There a sequence is distributed (each router takes its own chunk of values, unique but ordered
 * only within a session), so "newest" is read by timestamp first, never by id alone.
 */
export function idSequence(table: string): string {
  return `CREATE SEQUENCE IF NOT EXISTS ${ADMIN_SCHEMA}.${table}_id_seq AS bigint`;
}

/** The `id` column of a control table, numbered by `idSequence(table)`. */
export function idColumn(table: string): string {
  return `id bigint NOT NULL DEFAULT nextval('${ADMIN_SCHEMA}.${table}_id_seq') PRIMARY KEY`;
}

export const ADMIN_SCHEMA_SQL: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS ${ADMIN_SCHEMA}`,
  `CREATE SCHEMA IF NOT EXISTS ${STAGING_SCHEMA}`,
  `CREATE SCHEMA IF NOT EXISTS ${RETIRED_SCHEMA}`,
  DESCRIPTIONS_SQL,
  idSequence('retired_versions'),
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.retired_versions (
    ${idColumn('retired_versions')},
    live_schema name NOT NULL,
    live_table name NOT NULL,
    retired_table name NOT NULL UNIQUE,
    run_id text NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT clock_timestamp()
  )`,
  describeTable(
    'retired_versions',
    `Previous versions of live tables replaced by a rename swap; each is a table in ${RETIRED_SCHEMA}, kept for rollback.`,
  ),
  // The quality gate's figures of a staging table, written by the figures statement itself so
  // that they outlive a call the transport cut off (see load/quality-gate.ts). One row per
  // staging table; statement_marker tells this attempt's row from an earlier one's.
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.staging_figures (
    staging_schema name NOT NULL,
    staging_table name NOT NULL,
    statement_marker text NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    figures jsonb NOT NULL,
    PRIMARY KEY (staging_schema, staging_table)
  )`,
  // When each staging table was last analyzed by analyze_table, written in the ANALYZE's own
  // transaction: a caller whose call was cut off learns that the ANALYZE finished as soon as it
  // committed. pg_stat_all_tables.analyze_count cannot tell: before PostgreSQL 15 the stats
  // collector delivers it late (PGSTAT_STAT_INTERVAL, 500 ms) and may drop it under load.
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.staging_analyzed (
    staging_schema name NOT NULL,
    staging_table name NOT NULL,
    analyzed_at timestamptz NOT NULL,
    PRIMARY KEY (staging_schema, staging_table)
  )`,
  // Swaps done, by run id, written in the swap's own transaction: a call retried after its
  // commit (the answer lost to a Data API cut-off, a Lambda retry) finds its swap here and
  // answers with the recorded result instead of failing on the staging table it consumed.
  // plan_digest tells apart swaps that share a run id (a rollback's run id names a second).
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.swaps (
    run_id text NOT NULL,
    plan_digest text NOT NULL,
    swapped_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    result jsonb NOT NULL,
    PRIMARY KEY (run_id, plan_digest)
  )`,
  // ANALYZE takes a name, not a parameter: this lets a bound regclass name the table.
  `CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.analyze_table(p_table regclass)
   RETURNS void
   LANGUAGE plpgsql
   SET search_path = pg_catalog, pg_temp
   AS $fn$
   BEGIN
     EXECUTE format('ANALYZE %s', p_table);
     INSERT INTO ${ADMIN_SCHEMA}.staging_analyzed (staging_schema, staging_table, analyzed_at)
     SELECT n.nspname, c.relname, clock_timestamp()
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table
     ON CONFLICT (staging_schema, staging_table) DO UPDATE SET analyzed_at = excluded.analyzed_at;
   END
   $fn$`,
  // Drops one retired version under a short lock_timeout, in one statement.
  `CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.drop_retired_version(p_retired_table name, p_lock_timeout_ms integer)
   RETURNS void
   LANGUAGE plpgsql
   SET search_path = pg_catalog, pg_temp
   AS $fn$
   BEGIN
     PERFORM set_config('lock_timeout', p_lock_timeout_ms || 'ms', true);
     EXECUTE format('DROP TABLE IF EXISTS ${RETIRED_SCHEMA}.%I', p_retired_table);
     DELETE FROM ${ADMIN_SCHEMA}.retired_versions WHERE retired_table = p_retired_table;
   END
   $fn$`,
];
