/**
 * The key table of `deletes: "reconcile"`: the source's keys of the unload's snapshot, imported
 * next to staging (in STAGING_SCHEMA, so fail-run and the next run drop a leftover with the
 * staging tables), dropped by the swap with staging. Its columns take the live table's key
 * columns' types, so that the swap compares keys on both sides with the same templates
 * (redshift_sync.delete_missing_keys). No indexes: the anti-join hashes it once.
 */
import { ConfigError } from '../errors';
import { displayQualified, quoteQualified } from '../identifiers';
import { STAGING_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import type { TableTransfer } from '../transfer/types';
import { buildCreateStagingStatement, dropStaging } from './staging';

/**
 * Creates the transfer's key table, empty, dropping a leftover of the same name first (a
 * retried step). UNLOGGED where staging is (while a FOR ALL TABLES publication exists: see
 * createStagingTable), so that its rows are never published either.
 */
export async function createKeyTable(db: SqlClient, transfer: TableTransfer): Promise<void> {
  const { keys } = transfer;
  if (!keys) return;
  const live = transfer.table.target;
  const rows = await db.query<{ name: string; type: string | null; published: boolean }>(
    `SELECT k.name, format_type(a.atttypid, a.atttypmod) AS type,
            EXISTS (SELECT FROM pg_publication WHERE puballtables) AS published
       FROM jsonb_array_elements_text(:names::jsonb) WITH ORDINALITY AS k(name, position)
       LEFT JOIN pg_attribute a
         ON a.attrelid = to_regclass(format('%I.%I', :schema::text, :table::text))
        AND a.attname = k.name AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY k.position`,
    {
      names: JSON.stringify(keys.columns.map((column) => column.name)),
      schema: live.schema,
      table: live.name,
    },
  );
  const missing = rows.find((row) => row.type === null);
  if (missing) {
    throw new ConfigError(
      `${displayQualified(live)}: key column ${JSON.stringify(missing.name)} of deletes "reconcile" is no longer a column of the live table; set "primaryKey" to columns of the live table, and run again.`,
    );
  }
  if (keys.table.schema !== STAGING_SCHEMA) {
    throw new ConfigError(
      `key table ${displayQualified(keys.table)} must be in schema ${STAGING_SCHEMA}, where leftovers of killed runs are found and dropped.`,
    );
  }
  const statement = buildCreateStagingStatement(
    keys.table,
    { columns: rows.map((row) => ({ name: row.name, targetType: row.type! })) },
    { unlogged: rows[0]?.published ?? false },
  );
  await dropStaging(db, keys.table);
  await db.query(statement);
}

/**
 * Gives the planner the key table's size once its files are in (autovacuum would come too
 * late): the swap's anti-join then hashes the key table and scans live once (a hash anti-join).
 */
export async function analyzeKeyTable(db: SqlClient, transfer: TableTransfer): Promise<void> {
  if (!transfer.keys) return;
  await db.query(`ANALYZE ${quoteQualified(transfer.keys.table)}`);
}
