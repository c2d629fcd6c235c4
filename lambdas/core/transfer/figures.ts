/**
 * The figures query: one SELECT that both Redshift (over the source table, inside the unload
 * transaction, so the figures describe the unloaded snapshot) and PostgreSQL (over the staging
 * table, after import) run unchanged. Every figure comes back as text, so no transport (Data
 * API JSON, node-postgres) can round or reformat it.
 */
import { quoteIdentifier } from '../identifiers';
import type { ColumnFigures, FigureKind, TableFigures } from './types';

export interface FiguredColumn {
  readonly name: string;
  readonly figures: FigureKind;
}

const TEXT = 'VARCHAR(100)';
const TIMESTAMP_PATTERN = `'YYYY-MM-DD HH24:MI:SS.US'`;

function extremes(kind: FigureKind, column: string): { min: string; max: string } | null {
  switch (kind) {
    case 'integer':
    case 'decimal':
    case 'float4':
    case 'float8':
      return { min: `CAST(MIN(${column}) AS ${TEXT})`, max: `CAST(MAX(${column}) AS ${TEXT})` };
    case 'date':
      return {
        min: `TO_CHAR(MIN(${column}), 'YYYY-MM-DD')`,
        max: `TO_CHAR(MAX(${column}), 'YYYY-MM-DD')`,
      };
    case 'timestamp':
      return {
        min: `TO_CHAR(MIN(${column}), ${TIMESTAMP_PATTERN})`,
        max: `TO_CHAR(MAX(${column}), ${TIMESTAMP_PATTERN})`,
      };
    case 'timestamptz':
      return {
        min: `TO_CHAR(MIN(${column}) AT TIME ZONE 'UTC', ${TIMESTAMP_PATTERN})`,
        max: `TO_CHAR(MAX(${column}) AT TIME ZONE 'UTC', ${TIMESTAMP_PATTERN})`,
      };
    default:
      return null;
  }
}

/** `SELECT ... FROM <relation>`; `relation` is an already quoted, qualified name. */
export function buildFiguresQuery(relation: string, columns: readonly FiguredColumn[]): string {
  const selectList = [`CAST(COUNT(*) AS ${TEXT}) AS row_count`];
  columns.forEach((column, index) => {
    const quoted = quoteIdentifier(column.name);
    selectList.push(`CAST(COUNT(*) - COUNT(${quoted}) AS ${TEXT}) AS c${index}_nulls`);
    const range = extremes(column.figures, quoted);
    if (range) selectList.push(`${range.min} AS c${index}_min`, `${range.max} AS c${index}_max`);
    if (column.figures === 'octets') {
      selectList.push(`CAST(SUM(OCTET_LENGTH(${quoted})) AS ${TEXT}) AS c${index}_octets`);
    }
    if (column.figures === 'boolean') {
      selectList.push(
        `CAST(SUM(CASE WHEN ${quoted} THEN 1 ELSE 0 END) AS ${TEXT}) AS c${index}_trues`,
      );
    }
  });
  return `SELECT ${selectList.join(', ')} FROM ${relation}`;
}

function count(row: Readonly<Record<string, unknown>>, key: string): number {
  const value = row[key];
  const parsed = typeof value === 'number' ? value : Number(value ?? 0);
  if (!Number.isSafeInteger(parsed)) {
    throw new Error(`figure ${key} is ${JSON.stringify(value)}, not a whole number`);
  }
  return parsed;
}

function text(row: Readonly<Record<string, unknown>>, key: string): string | null {
  const value = row[key];
  return value === null || value === undefined ? null : String(value);
}

/** Reads the one row of a figures query back into figures, column by column. */
export function parseFigures(
  row: Readonly<Record<string, unknown>>,
  columns: readonly FiguredColumn[],
): TableFigures {
  return {
    rows: count(row, 'row_count'),
    columns: columns.map((column, index): ColumnFigures => {
      const prefix = `c${index}_`;
      const base = {
        column: column.name,
        kind: column.figures,
        nulls: count(row, `${prefix}nulls`),
      };
      if (extremes(column.figures, '')) {
        return { ...base, min: text(row, `${prefix}min`), max: text(row, `${prefix}max`) };
      }
      if (column.figures === 'octets')
        return { ...base, octets: text(row, `${prefix}octets`) ?? '0' };
      if (column.figures === 'boolean') return { ...base, trues: count(row, `${prefix}trues`) };
      return base;
    }),
  };
}

/**
 * Figures back in the shape of the figures query's one row (every value text), as
 * `redshift_sync.check_increment` compares them with the live table's.
 */
export function figuresRow(figures: TableFigures): Record<string, string | null> {
  const row: Record<string, string | null> = { row_count: String(figures.rows) };
  figures.columns.forEach((column, index) => {
    const prefix = `c${index}_`;
    row[`${prefix}nulls`] = String(column.nulls);
    if (column.min !== undefined) row[`${prefix}min`] = column.min;
    if (column.max !== undefined) row[`${prefix}max`] = column.max;
    if (column.octets !== undefined) row[`${prefix}octets`] = column.octets;
    if (column.trues !== undefined) row[`${prefix}trues`] = String(column.trues);
  });
  return row;
}
