/**
 * The data path's shared vocabulary: what a configured table is, how each of its columns
 * travels from Redshift to Aurora, where its files land, and the figures that prove nothing
 * was lost on the way. Pure types; the Redshift side (unload), the Aurora side (load), the
 * local emulators and the pipeline handlers all speak them.
 */
import type { QualifiedName } from '../identifiers';
import type { SwapStrategy } from '../swap/types';

/** One configured table: read from `source` in Redshift, published into `target` in Aurora. */
export interface SyncTable {
  readonly source: QualifiedName;
  readonly target: QualifiedName;
  readonly strategy: SwapStrategy;
  /** `merge` only: key columns; discovered from the target's primary key when absent. */
  readonly primaryKey?: readonly string[];
  /** Whether an empty source may replace a non-empty live table. */
  readonly allowEmpty: boolean;
  /** Move only the rows whose cursor passed the last run's watermark; absent: every run is full. */
  readonly incremental?: IncrementalSettings;
}

/**
 * How an increment is applied: `merge` updates the rows whose key live has and inserts the
 * rest (it needs a key, as strategy `merge` does); `append` inserts every row of the delta.
 */
export const INCREMENT_MODES = ['merge', 'append'] as const;
export type IncrementMode = (typeof INCREMENT_MODES)[number];

/**
 * What happens to rows deleted from the source, which a cursor cannot see: `ignore` leaves
 * them in live (the whole-table proof then fails and the next run is full); `reconcile`
 * unloads the source's keys with every increment and deletes the live rows whose key is gone
 * (it needs a key: `primaryKey` or the live table's primary key).
 */
export const INCREMENT_DELETES = ['ignore', 'reconcile'] as const;
export type IncrementDeletes = (typeof INCREMENT_DELETES)[number];

/** `incremental`: a column that grows with every change, and how its delta is applied. */
export interface IncrementalSettings {
  /** The cursor column, in source and target: an integer, numeric, date or timestamp(tz) column. */
  readonly cursor: string;
  readonly mode: IncrementMode;
  readonly deletes: IncrementDeletes;
}

/** A source column as `information_schema.columns` describes it (Redshift, or its local stand-in). */
export interface SourceColumn {
  readonly name: string;
  /** `information_schema.columns.data_type`, lower case: `character varying`, `numeric`, `super`, ... */
  readonly dataType: string;
  readonly characterMaximumLength: number | null;
  readonly numericPrecision: number | null;
  readonly numericScale: number | null;
}

/**
 * Which figures the quality gate compares for a column, chosen so that Redshift and
 * PostgreSQL compute them with the same SQL and print them the same way:
 * - `integer`, `decimal`: null count, min and max as text (exact);
 * - `date`, `timestamp`, `timestamptz`: null count, min and max through one TO_CHAR pattern
 *   (microseconds; timestamptz in UTC);
 * - `float4`, `float8`: null count, min and max compared as numbers at the precision both
 *   engines print by default (6 and 15 significant digits);
 * - `octets`: null count and the total length in bytes (character varying, text): catches any
 *   escaping slip without depending on either engine's collation;
 * - `boolean`: null count and how many are true;
 * - `nulls`: null count only (time, SUPER, VARBYTE, GEOMETRY, char(n) and anything else).
 */
export const FIGURE_KINDS = [
  'integer',
  'decimal',
  'date',
  'timestamp',
  'timestamptz',
  'float4',
  'float8',
  'octets',
  'boolean',
  'nulls',
] as const;
export type FigureKind = (typeof FIGURE_KINDS)[number];

/** How one target column is filled from the source and checked. */
export interface ColumnTransfer {
  /** The column's name, the same in source and target. */
  readonly name: string;
  /** The Redshift expression (over the quoted source column) whose text form PostgreSQL COPY accepts. */
  readonly selectExpression: string;
  /**
   * Where the expression yields Redshift text that may pass VARCHAR's limit (SUPER, VARBYTE):
   * the Redshift expression for that text's length in bytes, over the quoted source column.
   * The unload checks it before any UNLOAD runs (core/unload/oversize.ts).
   */
  readonly convertedBytes?: string;
  /** The PostgreSQL type of the target column (from the live table, or the type map on a first run). */
  readonly targetType: string;
  readonly figures: FigureKind;
}

/** One table's share of a run: where its rows come from, travel through and land. */
export interface TableTransfer {
  readonly table: SyncTable;
  /** The staging table in Aurora that receives the rows. */
  readonly staging: QualifiedName;
  /** Target columns in the target's order (generated columns left out). */
  readonly columns: readonly ColumnTransfer[];
  /** `s3://bucket/prefix/`: the per-run, per-table folder UNLOAD writes to (ends with `/`). */
  readonly s3Prefix: string;
  /** An incremental run: only the source rows past the watermark are unloaded. */
  readonly delta?: DeltaFilter;
  /** A delta with `deletes: "reconcile"`: the whole source table's keys, unloaded alongside. */
  readonly keys?: KeyTransfer;
}

/**
 * The source's key set of one snapshot: a key-only UNLOAD into a folder of its own, imported
 * into a key table next to staging, against which the swap deletes the live rows gone from
 * the source (redshift_sync.publish_increment).
 */
export interface KeyTransfer {
  /** The key columns, in key order, as `columns` transfers them. */
  readonly columns: readonly ColumnTransfer[];
  /** The key table in STAGING_SCHEMA. */
  readonly table: QualifiedName;
  /** `s3://bucket/prefix/keys/`: under the table's folder, written after its data files. */
  readonly s3Prefix: string;
}

/**
 * `<cursor> >= CAST(<watermark> AS <castType>)` (mode merge: rows sharing the watermark's
 * cursor value may have come after it was taken) or `>` (mode append: each row once).
 */
export interface DeltaFilter {
  readonly cursor: string;
  readonly operator: '>=' | '>';
  /** The watermark's text as the figures print it; always sent as a quoted literal. */
  readonly watermark: string;
  /** The source type the literal is cast to, from a fixed list (cursorCastType). */
  readonly castType: string;
}

/** One data file of an UNLOAD, as its VERBOSE manifest lists it. */
export interface DataFile {
  readonly bucket: string;
  readonly key: string;
  readonly bytes: number;
  readonly records: number;
}

/** A column's figures; which fields are set follows its FigureKind (`null` when every value is NULL). */
export interface ColumnFigures {
  readonly column: string;
  readonly kind: FigureKind;
  readonly nulls: number;
  readonly min?: string | null;
  readonly max?: string | null;
  readonly octets?: string | null;
  readonly trues?: number;
}

/** The figures of one table at one moment: the source's in the unload snapshot, or staging's after import. */
export interface TableFigures {
  readonly rows: number;
  readonly columns: readonly ColumnFigures[];
}

/** A column of the live target table, as Aurora's catalog describes it. */
export interface TargetColumn {
  readonly name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(38,10)`, `character varying(256)`. */
  readonly type: string;
  /** Generated columns are computed by PostgreSQL, never imported. */
  readonly generated: boolean;
}
