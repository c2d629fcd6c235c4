/**
 * `redshift_sync.watermarks`: per incremental table, how far its rows have been applied. The
 * swap writes a table's row in the transaction that publishes its rows (see ./swap.ts), so the
 * watermark and the rows it stands for commit together or not at all: a killed or failed run
 * neither skips nor applies a change twice.
 */
import { ADMIN_SCHEMA, describeTable } from './admin';

export const WATERMARKS_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.watermarks (
    target_schema name NOT NULL,
    target_table name NOT NULL,
    cursor_column name NOT NULL,
    cursor_type text NOT NULL,
    watermark text,
    full_refresh_reason text,
    run_id text NOT NULL,
    source_schema name,
    source_table name,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (target_schema, target_table)
  )`,
  describeTable(
    'watermarks',
    'Per incremental table of the Redshift-to-Aurora sync: the cursor column, its figure kind, the largest cursor value applied (NULL: none, so the next run is full), the source table it was taken over, and why the next run must be full (full_refresh_reason), if it must. Delete a row to make the next run of that table full.',
  ),
];
