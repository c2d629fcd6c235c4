/**
 * Column discovery on the source: one query over `information_schema.columns`, which Redshift
 * and its local PostgreSQL stand-in both answer the same way, and its parsing.
 */
import { displayQualified, type QualifiedName } from '../identifiers';
import type { SourceColumn } from '../transfer/types';
import { SourceTableError } from './errors';

/**
 * The source table's columns in their declared order. Parameters `:schema` and `:table` are
 * the unquoted names. Driven from a one-row subquery so that a table the user cannot see
 * still gives one row, carrying `current_user` for the error message. Numbers are cast to
 * INTEGER so every transport returns them as plain numbers.
 */
export const SOURCE_COLUMNS_SQL = `SELECT CAST(current_user AS VARCHAR(128)) AS reader,
  CAST(c.column_name AS VARCHAR(128)) AS column_name,
  CAST(c.data_type AS VARCHAR(128)) AS data_type,
  CAST(c.character_maximum_length AS INTEGER) AS character_maximum_length,
  CAST(c.numeric_precision AS INTEGER) AS numeric_precision,
  CAST(c.numeric_scale AS INTEGER) AS numeric_scale
FROM (SELECT 1 AS one) AS reader_row
LEFT JOIN information_schema.columns AS c
  ON c.table_schema = :schema AND c.table_name = :table
ORDER BY c.ordinal_position`;

/** The parameters of SOURCE_COLUMNS_SQL for one table. */
export function sourceColumnsParameters(source: QualifiedName): Record<string, string> {
  return { schema: source.schema, table: source.name };
}

type ResultRow = Readonly<Record<string, unknown>>;

function text(row: ResultRow, key: string): string | null {
  const value = row[key];
  return value === null || value === undefined ? null : String(value);
}

function wholeNumber(row: ResultRow, key: string, where: string): number | null {
  const value = row[key];
  if (value === null || value === undefined) return null;
  const parsed = typeof value === 'number' ? value : Number(String(value));
  if (!Number.isSafeInteger(parsed)) {
    throw new SourceTableError(
      `${where}: ${key} is ${JSON.stringify(value)}, not a whole number; the column query's result is not what it should be.`,
    );
  }
  return parsed;
}

/** Reads SOURCE_COLUMNS_SQL's rows; a table without columns is one the reader cannot use. */
export function parseSourceColumns(
  rows: readonly ResultRow[],
  source: QualifiedName,
): SourceColumn[] {
  const columns = rows.flatMap((row): SourceColumn[] => {
    const name = text(row, 'column_name');
    if (name === null) return [];
    const where = `column ${JSON.stringify(name)} of ${displayQualified(source)}`;
    return [
      {
        name,
        dataType: (text(row, 'data_type') ?? '').trim().toLowerCase(),
        characterMaximumLength: wholeNumber(row, 'character_maximum_length', where),
        numericPrecision: wholeNumber(row, 'numeric_precision', where),
        numericScale: wholeNumber(row, 'numeric_scale', where),
      },
    ];
  });
  if (columns.length === 0) {
    const reader = rows.map((row) => text(row, 'reader')).find((name) => name !== null);
    throw new SourceTableError(
      `source table ${displayQualified(source)} does not exist or cannot be read by ${reader ? JSON.stringify(reader) : "the pipeline's database user"}: it has no columns that user can see. Check the schema and table name (case matters inside double quotes) and GRANT USAGE on the schema and SELECT on the table to that user.`,
    );
  }
  return columns;
}
