/**
 * What Aurora's catalog says about a live target table: its columns (which decide how each
 * source column is converted and whether a type map is needed at all) and its row count
 * (which the quality gate's empty guard compares against).
 */
import { type QualifiedName, quoteQualified } from '../identifiers';
import type { SqlClient } from '../sql-client';
import type { TargetColumn } from '../transfer/types';

/**
 * The live table's columns in attnum order, with their types as `format_type` prints them;
 * null when the table does not exist yet (a first run).
 */
export async function targetColumns(
  db: SqlClient,
  target: QualifiedName,
): Promise<TargetColumn[] | null> {
  // One statement, so that "exists" and "has these columns" describe the same moment.
  const [row] = await db.query<{ columns: string | null }>(
    `SELECT (SELECT coalesce(json_agg(json_build_object(
                       'name', a.attname,
                       'type', format_type(a.atttypid, a.atttypmod),
                       'generated', a.attgenerated <> '') ORDER BY a.attnum), '[]')::text
             FROM pg_attribute a
             WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
     FROM (SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) AS oid) t
     WHERE t.oid IS NOT NULL`,
    { schema: target.schema, name: target.name },
  );
  if (!row?.columns) return null;
  return JSON.parse(row.columns) as TargetColumn[];
}

/** The live table's exact row count; null when the table does not exist. */
export async function liveRowCount(db: SqlClient, target: QualifiedName): Promise<number | null> {
  const [exists] = await db.query<{ exists: boolean }>(
    `SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) IS NOT NULL AS exists`,
    { schema: target.schema, name: target.name },
  );
  if (!exists?.exists) return null;
  // As text: a bigint travels as a string over node-postgres and as a number over the Data API.
  const [row] = await db.query<{ rows: string }>(
    `SELECT count(*)::text AS rows FROM ${quoteQualified(target)}`,
  );
  return Number(row!.rows);
}
