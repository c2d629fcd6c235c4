/**
 * Whether a run takes an incremental table whole or only its rows past the watermark, and
 * which cursor columns can carry a watermark. Pure, but for reading and marking the watermarks
 * in Aurora (`redshift_sync.watermarks`, written by the swap: ../schema/watermarks.ts).
 */
import * as z from 'zod';
import { ConfigError } from '../errors';
import {
  displayIdentifier,
  displayQualified,
  type QualifiedName,
  sameQualifiedName,
} from '../identifiers';
import { ADMIN_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import {
  type ColumnTransfer,
  type DeltaFilter,
  type FigureKind,
  INCREMENT_MODES,
  type SourceColumn,
  type SyncTable,
  type TableFigures,
} from '../transfer/types';
import { targetTypeFor, typeMapEntryFor } from '../unload/type-map';

/** The figure kinds whose max is the exact text of a value, and so can be a watermark. */
export const CURSOR_KINDS = ['integer', 'decimal', 'date', 'timestamp', 'timestamptz'] as const;
export type CursorKind = (typeof CURSOR_KINDS)[number];

const SUITABLE =
  'integer types (smallint, integer, bigint), numeric/decimal, date, timestamp and timestamptz';

/** What a run does with an incremental table, recorded in the unload record. */
export const tableIncrement = z.object({
  cursor: z.string(),
  cursorKind: z.enum(CURSOR_KINDS),
  /** How the delta is applied, as configured. */
  apply: z.enum(INCREMENT_MODES),
  mode: z.enum(['full', 'incremental']),
  /** Why the run takes the table whole; null for an incremental run. */
  fullReason: z.string().nullable(),
  /** The watermark the run started from (null: none). */
  watermarkBefore: z.string().nullable(),
  /** The source type the watermark's literal is cast to in Redshift. */
  castType: z.string(),
});
export type TableIncrement = z.infer<typeof tableIncrement>;

/** A row of redshift_sync.watermarks. */
export interface StoredWatermark {
  /** The source table it was taken over; null in rows written before that was recorded. */
  readonly source: QualifiedName | null;
  readonly cursorColumn: string;
  readonly cursorType: string;
  readonly watermark: string | null;
  readonly fullRefreshReason: string | null;
}

/**
 * The cursor of an incremental table: a column synced (in the source and the live table) whose
 * figures carry an exact max. Throws ConfigError naming the table, the column and its type.
 */
export function checkCursor(
  table: SyncTable,
  cursor: string,
  source: readonly SourceColumn[],
  columns: readonly ColumnTransfer[],
): { readonly kind: CursorKind; readonly castType: string } {
  const where = `${displayQualified(table.target)}: incremental.cursor ${displayIdentifier(cursor)}`;
  const sourceColumn = source.find((column) => column.name === cursor);
  if (!sourceColumn) {
    throw new ConfigError(
      `${where} is not a column of the source table ${displayQualified(table.source)} (its columns: ${source.map((column) => displayIdentifier(column.name)).join(', ')}); name a column of both tables.`,
    );
  }
  const transfer = columns.find((column) => column.name === cursor);
  if (!transfer) {
    throw new ConfigError(
      `${where} is not synced: the live table ${displayQualified(table.target)} has no such column (or computes it); add it to the live table or name another cursor.`,
    );
  }
  const kind = transfer.figures as FigureKind;
  const sourceKind = typeMapEntryFor(sourceColumn)?.figures;
  if (!isCursorKind(kind) && sourceKind !== undefined && isCursorKind(sourceKind)) {
    // The source's type would do, but the live column's type differs from the one the
    // source's maps to, so their values do not print alike and no watermark can be compared.
    throw new ConfigError(
      `${where} has type ${sourceColumn.dataType} in ${displayQualified(table.source)} but ${transfer.targetType} in the live table: a cursor's values must print alike on both sides; give the live column type ${targetTypeFor(sourceColumn, table.source)}, or name another cursor.`,
    );
  }
  if (!(CURSOR_KINDS as readonly string[]).includes(kind)) {
    throw new ConfigError(
      `${where} has type ${sourceColumn.dataType} in ${displayQualified(table.source)}, which cannot be a cursor; use a column of one of ${SUITABLE}, that grows with every change.`,
    );
  }
  if (kind === 'date' && table.incremental?.mode === 'append') {
    // Rows of a day keep arriving after a run has taken that day as its watermark; append
    // sends only rows past it (">", each row once), so they would never come, and every
    // such run would fail its whole-table check.
    throw new ConfigError(
      `${where} is a date, which mode "append" cannot use: it sends only the rows past the watermark's day, so rows of that day added after a run would never come. Use mode "merge" with a key (it reads from the watermark's day on), or a timestamp cursor.`,
    );
  }
  return { kind: kind as CursorKind, castType: castType(kind as CursorKind, sourceColumn) };
}

function castType(kind: CursorKind, column: SourceColumn): string {
  switch (kind) {
    case 'integer':
      return 'BIGINT';
    case 'decimal':
      return column.numericPrecision !== null && column.numericScale !== null
        ? `NUMERIC(${column.numericPrecision},${column.numericScale})`
        : 'NUMERIC';
    case 'date':
      return 'DATE';
    case 'timestamp':
      return 'TIMESTAMP';
    case 'timestamptz':
      return 'TIMESTAMPTZ';
  }
}

/** What each kind's max looks like as the figures print it (../transfer/figures.ts). */
const WATERMARK_SHAPE: Record<CursorKind, RegExp> = {
  integer: /^-?\d+$/,
  decimal: /^-?\d+(\.\d+)?$/,
  date: /^\d{4}-\d{2}-\d{2}$/,
  timestamp: /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/,
  timestamptz: /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/,
};

/**
 * Full or incremental. Full when asked (`fullRefresh`), when there is no live table or no
 * watermark, when the cursor column or its kind changed since the watermark was taken, or when
 * a run marked the table for a full refresh (its whole-table proof failed).
 */
export function decideIncrement(
  table: SyncTable,
  cursor: { readonly kind: CursorKind; readonly castType: string },
  stored: StoredWatermark | null,
  options: { readonly fullRefresh: boolean; readonly liveExists: boolean },
): TableIncrement {
  const settings = table.incremental!;
  return {
    cursor: settings.cursor,
    cursorKind: cursor.kind,
    apply: settings.mode,
    watermarkBefore: stored?.watermark ?? null,
    castType: cursor.castType,
    ...incrementMode(table, stored, { ...options, cursorKind: cursor.kind }),
  };
}

/**
 * decideIncrement's choice alone. `cursorKind` null: the cursor's type in the source is not
 * known (a dry run does not ask Redshift), so a change of it is not looked for and the stored
 * watermark is read as the kind it was taken as.
 */
export function incrementMode(
  table: SyncTable,
  stored: StoredWatermark | null,
  options: {
    readonly fullRefresh: boolean;
    readonly liveExists: boolean;
    readonly cursorKind: CursorKind | null;
  },
): Pick<TableIncrement, 'mode' | 'fullReason'> {
  const cursor = table.incremental!.cursor;
  const full = (reason: string) => ({ mode: 'full' as const, fullReason: reason });
  if (options.fullRefresh) return full('the run was started with fullRefresh');
  if (!options.liveExists) return full('the live table does not exist yet');
  if (!stored || stored.watermark === null) return full('no watermark yet: the first run');
  if (stored.fullRefreshReason !== null) return full(stored.fullRefreshReason);
  if (stored.source && !sameQualifiedName(stored.source, table.source)) {
    return full(
      `the source table changed from ${displayQualified(stored.source)} to ${displayQualified(table.source)}`,
    );
  }
  if (stored.cursorColumn !== cursor) {
    return full(
      `the cursor column changed from ${displayIdentifier(stored.cursorColumn)} to ${displayIdentifier(cursor)}`,
    );
  }
  const kind = options.cursorKind ?? stored.cursorType;
  if (stored.cursorType !== kind) {
    return full(`the cursor's type changed from ${stored.cursorType} to ${kind}`);
  }
  if (!isCursorKind(kind) || !WATERMARK_SHAPE[kind].test(stored.watermark)) {
    return full(`the stored watermark ${JSON.stringify(stored.watermark)} is not a ${kind} value`);
  }
  return { mode: 'incremental', fullReason: null };
}

function isCursorKind(kind: string): kind is CursorKind {
  return (CURSOR_KINDS as readonly string[]).includes(kind);
}

/** The unload's filter for an incremental run; undefined for a full one. */
export function deltaFilter(increment: TableIncrement): DeltaFilter | undefined {
  if (increment.mode !== 'incremental' || increment.watermarkBefore === null) return undefined;
  return {
    cursor: increment.cursor,
    // merge: rows sharing the watermark's value may have come after it was taken, and one sent
    // again unchanged is not written; append inserts every row it gets, so each row once.
    operator: increment.apply === 'merge' ? '>=' : '>',
    // The figures print timestamptz in UTC without a zone: say so, whatever the session's zone.
    watermark:
      increment.cursorKind === 'timestamptz'
        ? `${increment.watermarkBefore}+00`
        : increment.watermarkBefore,
    castType: increment.castType,
  };
}

/** The new watermark: the cursor's max in the whole source table of the snapshot. */
export function watermarkAfter(increment: TableIncrement, whole: TableFigures): string | null {
  const column = whole.columns.find((figures) => figures.column === increment.cursor);
  return column?.max ?? null;
}

/**
 * Why every run of the table must be full while its cursor is NULL in some rows of the
 * snapshot (null when it is in none): an increment selects rows by `cursor >= watermark` (or
 * `>`), which no NULL satisfies, so a row inserted with a NULL cursor, or updated to one, or
 * changed in any other column while its cursor stays NULL, would never reach live.
 */
export function nullCursorReason(
  increment: TableIncrement,
  whole: TableFigures,
  source: QualifiedName,
): string | null {
  const nulls = whole.columns.find((figures) => figures.column === increment.cursor)?.nulls ?? 0;
  if (nulls === 0) return null;
  const cursor = displayIdentifier(increment.cursor);
  return `the cursor ${cursor} was NULL in ${nulls} ${nulls === 1 ? 'row' : 'rows'} of the source table ${displayQualified(source)} at the last run: an increment cannot see a row whose cursor is NULL (inserted with NULL, or updated to NULL), so every run of this table is full until none is; make ${cursor} NOT NULL in the source (fill its NULLs, e.g. with the row's creation time, and set it on every insert and update), or name a cursor that is never NULL.`;
}

/** The stored watermarks of `targets`, by `schema.table` as displayQualified writes it. */
export async function readWatermarks(
  db: SqlClient,
  targets: readonly QualifiedName[],
): Promise<Map<string, StoredWatermark>> {
  const rows = await db.query<{
    schema: string;
    name: string;
    sourceSchema: string | null;
    sourceName: string | null;
    cursorColumn: string;
    cursorType: string;
    watermark: string | null;
    fullRefreshReason: string | null;
  }>(
    `SELECT w.target_schema::text AS schema, w.target_table::text AS name,
            w.source_schema::text AS "sourceSchema", w.source_table::text AS "sourceName",
            w.cursor_column::text AS "cursorColumn", w.cursor_type AS "cursorType",
            w.watermark, w.full_refresh_reason AS "fullRefreshReason"
       FROM ${ADMIN_SCHEMA}.watermarks w
      WHERE (w.target_schema::text, w.target_table::text) IN
            (SELECT t->>'schema', t->>'name' FROM jsonb_array_elements(:targets::jsonb) t)`,
    { targets: JSON.stringify(targets) },
  );
  return new Map(
    rows.map(({ schema, name, sourceSchema, sourceName, ...stored }) => [
      displayQualified({ schema, name }),
      {
        ...stored,
        source:
          sourceSchema !== null && sourceName !== null
            ? { schema: sourceSchema, name: sourceName }
            : null,
      },
    ]),
  );
}

/**
 * Marks a table so that its next run is full, saying why. Its own statement, after the swap
 * that found the mismatch rolled back.
 */
export async function requireFullRefresh(
  db: SqlClient,
  target: QualifiedName,
  reason: string,
): Promise<void> {
  await db.query(
    `UPDATE ${ADMIN_SCHEMA}.watermarks SET full_refresh_reason = :reason, updated_at = clock_timestamp()
      WHERE target_schema = :schema::text::name AND target_table = :name::text::name`,
    { reason, schema: target.schema, name: target.name },
  );
}
