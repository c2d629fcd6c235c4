/**
 * The data path's shared vocabulary: what a configured table is, how each of its columns
 * travels from Redshift to Aurora, where its files land, and the figures that prove nothing
 * was lost on the way. The Redshift side (unload), the Aurora side (load), the local emulators
 * and the pipeline handlers all speak them. What the run's files carry is a zod schema, its
 * type derived from it, so that reading them back (pipeline/run-files.ts) cannot drift.
 */
import * as z from 'zod';
import { count } from '../config-fields';
import { qualifiedName } from '../identifiers';
import { SWAP_STRATEGIES } from '../swap/types';

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
const incrementalSettings = z.object({
  /** The cursor column, in source and target: an integer, numeric, date or timestamp(tz) column. */
  cursor: z.string(),
  mode: z.enum(INCREMENT_MODES),
  deletes: z.enum(INCREMENT_DELETES),
});
export type IncrementalSettings = z.infer<typeof incrementalSettings>;

/** One configured table: read from `source` in Redshift, published into `target` in Aurora. */
const syncTable = z.object({
  source: qualifiedName,
  target: qualifiedName,
  strategy: z.enum(SWAP_STRATEGIES),
  /** `merge` only: key columns; discovered from the target's primary key when absent. */
  primaryKey: z.array(z.string()).readonly().optional(),
  /** Whether an empty source may replace a non-empty live table. */
  allowEmpty: z.boolean(),
  /** Move only the rows whose cursor passed the last run's watermark; absent: every run is full. */
  incremental: incrementalSettings.optional(),
});
export type SyncTable = z.infer<typeof syncTable>;

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
const columnTransfer = z.object({
  /** The column's name, the same in source and target. */
  name: z.string(),
  /** The Redshift expression (over the quoted source column) whose text form PostgreSQL COPY accepts. */
  selectExpression: z.string(),
  /**
   * Where the expression yields Redshift text that may pass VARCHAR's limit (SUPER, VARBYTE):
   * the Redshift expression for that text's length in bytes, over the quoted source column.
   * The unload checks it before any UNLOAD runs (core/unload/oversize.ts).
   */
  convertedBytes: z.string().optional(),
  /** The PostgreSQL type of the target column (from the live table, or the type map on a first run). */
  targetType: z.string(),
  figures: z.enum(FIGURE_KINDS),
});
export type ColumnTransfer = z.infer<typeof columnTransfer>;

/**
 * The source's key set of one snapshot: a key-only UNLOAD into a folder of its own, imported
 * into a key table next to staging, against which the swap deletes the live rows gone from
 * the source (redshift_sync.publish_increment).
 */
const keyTransfer = z.object({
  /** The key columns, in key order, as `columns` transfers them. */
  columns: z.array(columnTransfer).readonly(),
  /** The key table in STAGING_SCHEMA. */
  table: qualifiedName,
  /** `s3://bucket/prefix/keys/`: under the table's folder, written after its data files. */
  s3Prefix: z.string(),
});
export type KeyTransfer = z.infer<typeof keyTransfer>;

/**
 * `<cursor> >= CAST(<watermark> AS <castType>)` (mode merge: rows sharing the watermark's
 * cursor value may have come after it was taken) or `>` (mode append: each row once).
 */
const deltaFilter = z.object({
  cursor: z.string(),
  operator: z.enum(['>=', '>']),
  /** The watermark's text as the figures print it; always sent as a quoted literal. */
  watermark: z.string(),
  /** The source type the literal is cast to, from a fixed list (cursorCastType). */
  castType: z.string(),
});
export type DeltaFilter = z.infer<typeof deltaFilter>;

/** One table's share of a run: where its rows come from, travel through and land. */
export const tableTransfer = z.object({
  table: syncTable,
  /** The staging table in Aurora that receives the rows. */
  staging: qualifiedName,
  /** Target columns in the target's order (generated columns left out). */
  columns: z.array(columnTransfer).readonly(),
  /** `s3://bucket/prefix/`: the per-run, per-table folder UNLOAD writes to (ends with `/`). */
  s3Prefix: z.string(),
  /** An incremental run: only the source rows past the watermark are unloaded. */
  delta: deltaFilter.optional(),
  /** A delta with `deletes: "reconcile"`: the whole source table's keys, unloaded alongside. */
  keys: keyTransfer.optional(),
});
export type TableTransfer = z.infer<typeof tableTransfer>;

/** One data file of an UNLOAD, as its VERBOSE manifest lists it. */
export const dataFile = z.object({
  bucket: z.string(),
  key: z.string(),
  bytes: count,
  records: count,
});
export type DataFile = z.infer<typeof dataFile>;

/** A column's figures; which fields are set follows its FigureKind (`null` when every value is NULL). */
const columnFigures = z.object({
  column: z.string(),
  kind: z.enum(FIGURE_KINDS),
  nulls: count,
  min: z.string().nullable().optional(),
  max: z.string().nullable().optional(),
  octets: z.string().nullable().optional(),
  trues: count.optional(),
});
export type ColumnFigures = z.infer<typeof columnFigures>;

/** The figures of one table at one moment: the source's in the unload snapshot, or staging's after import. */
export const tableFigures = z.object({ rows: count, columns: z.array(columnFigures).readonly() });
export type TableFigures = z.infer<typeof tableFigures>;

/** A column of the live target table, as Aurora's catalog describes it. */
export interface TargetColumn {
  readonly name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(38,10)`, `character varying(256)`. */
  readonly type: string;
  /** Generated columns are computed by PostgreSQL, never imported. */
  readonly generated: boolean;
}
