/**
 * The key the `merge` strategy matches rows by: the columns configured as `primaryKey`, or else
 * the live table's primary key. Names travel as text parameters and are resolved in SQL with
 * to_regclass(format('%I.%I', ...)), so nothing a user typed is spliced into SQL text.
 */
import { ConfigError } from '../errors';
import { displayIdentifier, displayQualified, type QualifiedName } from '../identifiers';
import type { SqlClient } from '../sql-client';
import type { TableSwap } from './types';

/**
 * The table's primary key columns in key order (INCLUDE columns left out); null when it has no
 * primary key, or does not exist.
 */
export async function discoverPrimaryKey(
  db: SqlClient,
  live: QualifiedName,
): Promise<string[] | null> {
  const rows = await db.query<{ column_name: string }>(
    `SELECT a.attname::text AS column_name
       FROM pg_catalog.pg_index i
      CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS key(attnum, position)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = key.attnum
      WHERE i.indrelid = to_regclass(format('%I.%I', :schema::text, :name::text))
        AND i.indisprimary
        AND key.position <= i.indnkeyatts
      ORDER BY key.position`,
    { schema: live.schema, name: live.name },
  );
  return rows.length > 0 ? rows.map((row) => row.column_name) : null;
}

/**
 * The key columns to merge `table` by: its configured `primaryKey`, each checked to be a column
 * of the live table, or else the live table's primary key. Throws ConfigError when there is
 * neither, or when a configured column does not exist.
 *
 * When the live table does not exist yet, the swap creates it from staging by rename and needs
 * no key this run: a configured key is returned unchecked, or else staging's primary key (which
 * the renamed table keeps, so later runs discover the same key).
 */
export async function resolveMergeKey(db: SqlClient, table: TableSwap): Promise<string[]> {
  const where = displayQualified(table.live);
  const configured = table.primaryKey === undefined ? undefined : [...table.primaryKey];
  if (configured?.length === 0) {
    throw new ConfigError(
      `${where}: "primaryKey" is empty; list the columns that identify a row, or leave "primaryKey" out to use the live table's primary key`,
    );
  }
  const repeated = configured?.find((column, index) => configured.indexOf(column) !== index);
  if (repeated !== undefined) {
    throw new ConfigError(
      `${where}: "primaryKey" lists column ${displayIdentifier(repeated)} more than once; list each key column once`,
    );
  }

  const columns = await tableColumns(db, table.live);
  if (columns === null) {
    const key = configured ?? (await discoverPrimaryKey(db, table.staging));
    if (key) return key;
    throw new ConfigError(
      `${where}: a merge (strategy "merge", or incremental mode "merge") needs a primary key; the live table does not exist yet and the staging table ${displayQualified(table.staging)} has no primary key, so set "primaryKey" for this table in the config`,
    );
  }
  if (configured) {
    const missing = configured.find((column) => !columns.includes(column));
    if (missing !== undefined) {
      throw new ConfigError(
        `${where}: "primaryKey" column ${displayIdentifier(missing)} is not a column of the live table (its columns: ${columns.map(displayIdentifier).join(', ')}); fix the name in the config, putting names with capitals or spaces in "double quotes"`,
      );
    }
    return configured;
  }
  const discovered = await discoverPrimaryKey(db, table.live);
  if (discovered) return discovered;
  throw new ConfigError(
    `${where}: a merge (strategy "merge", or incremental mode "merge") needs a primary key; set "primaryKey" for this table in the config, or add a primary key to the live table`,
  );
}

/** The table's column names in order, or null when it does not exist. */
async function tableColumns(db: SqlClient, name: QualifiedName): Promise<string[] | null> {
  const rows = await db.query<{ found: boolean; column_name: string | null }>(
    `WITH t AS (SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) AS oid)
     SELECT t.oid IS NOT NULL AS found, a.attname::text AS column_name
       FROM t
       LEFT JOIN pg_catalog.pg_attribute a
         ON a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    { schema: name.schema, name: name.name },
  );
  if (!rows[0]?.found) return null;
  return rows.flatMap((row) => (row.column_name === null ? [] : [row.column_name]));
}
