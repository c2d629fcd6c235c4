/**
 * What each target column is filled with: the Redshift expression whose text form PostgreSQL
 * COPY accepts unchanged, the target type, and the figures the quality gate compares. The
 * columns follow the target's order; the source only has to have them.
 */
import { ConfigError } from '../errors';
import { displayIdentifier, displayQualified, quoteIdentifier } from '../identifiers';
import type { ColumnTransfer, SourceColumn, SyncTable, TargetColumn } from '../transfer/types';
import { figureKindFor, targetTypeFor, typeMapEntryFor } from './type-map';

/**
 * The per-column conversion (the type map's `unloadAs`). Plain columns print as PostgreSQL
 * reads them (numbers, t/f, ISO dates and times in UTC, text); a type the map lacks goes as
 * printed too, into a live table whose type the user chose. No backslash appears in the SQL,
 * so the query means the same in Redshift and in PostgreSQL.
 */
export function selectExpressionFor(column: SourceColumn): string {
  const quoted = quoteIdentifier(column.name);
  const template = typeMapEntryFor(column)?.unloadAs;
  return template === undefined ? quoted : template.replaceAll('{column}', quoted);
}

export interface ColumnPlan {
  /** What fills each target column, in the target's order. */
  readonly columns: readonly ColumnTransfer[];
  /** Source columns the target does not have: not synced (the run summary lists them). */
  readonly unsynced: readonly string[];
}

/** The expression for the byte length of the column's converted text, where that can pass VARCHAR's limit. */
export function convertedBytesFor(column: SourceColumn): string | undefined {
  return typeMapEntryFor(column)?.convertedBytes?.replaceAll(
    '{column}',
    quoteIdentifier(column.name),
  );
}

function transfer(column: SourceColumn, targetType: string): ColumnTransfer {
  const convertedBytes = convertedBytesFor(column);
  return {
    name: column.name,
    selectExpression: selectExpressionFor(column),
    ...(convertedBytes === undefined ? {} : { convertedBytes }),
    targetType,
    figures: figureKindFor(column, targetType),
  };
}

/**
 * Matches the source's columns to the target's by name. `target` is the live table's columns,
 * or null on a first run, when every source column is created with the type map's type.
 */
export function planColumns(
  table: SyncTable,
  source: readonly SourceColumn[],
  target: readonly TargetColumn[] | null,
): ColumnPlan {
  if (source.length === 0) {
    throw new ConfigError(
      `source table ${displayQualified(table.source)} has no columns; check that the pipeline's database user can read it.`,
    );
  }
  if (target === null) {
    return {
      columns: source.map((column) => transfer(column, targetTypeFor(column, table.source))),
      unsynced: [],
    };
  }
  const imported = target.filter((column) => !column.generated);
  const sourceByName = new Map(source.map((column) => [column.name, column]));
  const missing = imported.filter((column) => !sourceByName.has(column.name));
  if (missing.length > 0) {
    const names = missing.map((column) => displayIdentifier(column.name)).join(', ');
    throw new ConfigError(
      `live table ${displayQualified(table.target)} has column${missing.length === 1 ? '' : 's'} ${names} that source table ${displayQualified(table.source)} lacks. Add ${missing.length === 1 ? 'it' : 'them'} to the Redshift table (or to a view you sync instead), or drop ${missing.length === 1 ? 'it' : 'them'} from the live table, then run again.`,
    );
  }
  if (imported.length === 0) {
    throw new ConfigError(
      `live table ${displayQualified(table.target)} has no columns to fill (all are generated); there is nothing to sync into it.`,
    );
  }
  // A source column the target computes itself (generated) is not synced either.
  const importedNames = new Set(imported.map((column) => column.name));
  return {
    columns: imported.map((column) => transfer(sourceByName.get(column.name)!, column.type)),
    unsynced: source
      .filter((column) => !importedNames.has(column.name))
      .map((column) => column.name),
  };
}
