/**
 * The Redshift-to-PostgreSQL type map, used on a first run when there is no live table to
 * take types from, and the figure kind each column gets. Kept as data so the README can print
 * it; the local stand-in's PostgreSQL names for the same types are accepted too.
 */
import { ConfigError } from '../errors';
import { displayIdentifier, displayQualified, type QualifiedName } from '../identifiers';
import type { FigureKind, SourceColumn } from '../transfer/types';

export interface TypeMapEntry {
  /** The type as Redshift's documentation names it (for a stand-in entry, PostgreSQL's). */
  readonly redshift: string;
  /** Only the local PostgreSQL stand-in has this type; Redshift reports it otherwise. */
  readonly standIn?: true;
  /**
   * `information_schema.columns.data_type` values that mean this type: Redshift's first,
   * then those of the PostgreSQL stand-in used locally.
   */
  readonly dataTypes: readonly string[];
  /** The PostgreSQL type a first run creates, as the README shows it. */
  readonly postgres: string;
  /** How the column's values travel, where that is not just "as Redshift prints them". */
  readonly note: string;
  /**
   * The expression UNLOAD selects, `{column}` standing for the quoted column. Absent: the
   * plain column, whose printed form PostgreSQL reads as it is.
   */
  readonly unloadAs?: string;
  /**
   * For an `unloadAs` that makes VARCHAR out of a value that can be longer than VARCHAR holds
   * (65535 bytes): the Redshift expression for the length in bytes that text would have,
   * `{column}` standing for the quoted column. Checked before the unload (oversize.ts).
   */
  readonly convertedBytes?: string;
  /** Which figures the source side can give (the target side must agree, see figureKindFor). */
  readonly figures: FigureKind;
  /** The PostgreSQL type for one column, length, precision and scale filled in. */
  readonly targetType: (column: SourceColumn) => string;
}

function withLength(base: string, length: number | null, unbounded: string): string {
  return length === null ? unbounded : `${base}(${length})`;
}

export const TYPE_MAP: readonly TypeMapEntry[] = [
  {
    redshift: 'SMALLINT',
    dataTypes: ['smallint'],
    postgres: 'smallint',
    note: '',
    figures: 'integer',
    targetType: () => 'smallint',
  },
  {
    redshift: 'INTEGER',
    dataTypes: ['integer'],
    postgres: 'integer',
    note: '',
    figures: 'integer',
    targetType: () => 'integer',
  },
  {
    redshift: 'BIGINT',
    dataTypes: ['bigint'],
    postgres: 'bigint',
    note: '',
    figures: 'integer',
    targetType: () => 'bigint',
  },
  {
    redshift: 'DECIMAL(p,s)',
    dataTypes: ['numeric'],
    postgres: 'numeric(p,s)',
    note: 'same precision and scale; exact',
    figures: 'decimal',
    targetType: (column) =>
      column.numericPrecision === null
        ? 'numeric'
        : `numeric(${column.numericPrecision},${column.numericScale ?? 0})`,
  },
  {
    redshift: 'REAL',
    dataTypes: ['real'],
    postgres: 'real',
    note: 'unloaded as DOUBLE PRECISION, whose 17 digits read back as the same REAL exactly',
    // Redshift prints a REAL with at most FLT_DIG + 2 = 8 significant digits (its
    // extra_float_digits stops at 2: docs.aws.amazon.com/redshift/latest/dg/
    // r_extra_float_digits.html); a float4 needs 9 to be read back exactly (1000.00006 comes
    // out 1000.0001). Widening to float8 is exact, and DBL_DIG + 2 = 17 digits identify the
    // double, so PostgreSQL's real input rounds them to the same float4.
    unloadAs: 'CAST({column} AS DOUBLE PRECISION)',
    figures: 'float4',
    targetType: () => 'real',
  },
  {
    redshift: 'DOUBLE PRECISION',
    dataTypes: ['double precision'],
    postgres: 'double precision',
    note: 'printed with extra_float_digits 2, so values survive exactly',
    figures: 'float8',
    targetType: () => 'double precision',
  },
  {
    redshift: 'BOOLEAN',
    dataTypes: ['boolean'],
    postgres: 'boolean',
    note: 'written as t/f',
    figures: 'boolean',
    targetType: () => 'boolean',
  },
  {
    redshift: 'CHAR(n)',
    dataTypes: ['character'],
    postgres: 'character(n)',
    note: 'Redshift counts n in bytes, PostgreSQL in characters: n bytes always fit in n characters',
    figures: 'nulls',
    targetType: (column) => withLength('character', column.characterMaximumLength, 'bpchar'),
  },
  {
    redshift: 'VARCHAR(n)',
    dataTypes: ['character varying'],
    postgres: 'character varying(n)',
    note: 'Redshift counts n in bytes, PostgreSQL in characters: n bytes always fit in n characters',
    figures: 'octets',
    targetType: (column) =>
      withLength('character varying', column.characterMaximumLength, 'character varying'),
  },
  {
    redshift: 'TEXT',
    standIn: true,
    dataTypes: ['text'],
    postgres: 'text',
    note: 'Redshift itself reports TEXT columns as VARCHAR(256)',
    figures: 'octets',
    targetType: () => 'text',
  },
  {
    redshift: 'DATE',
    dataTypes: ['date'],
    postgres: 'date',
    note: '',
    figures: 'date',
    targetType: () => 'date',
  },
  {
    redshift: 'TIME',
    dataTypes: ['time without time zone'],
    postgres: 'time without time zone',
    note: '',
    figures: 'nulls',
    targetType: () => 'time without time zone',
  },
  {
    redshift: 'TIMETZ',
    dataTypes: ['time with time zone'],
    postgres: 'time with time zone',
    note: 'written in UTC',
    figures: 'nulls',
    targetType: () => 'time with time zone',
  },
  {
    redshift: 'TIMESTAMP',
    dataTypes: ['timestamp without time zone'],
    postgres: 'timestamp without time zone',
    note: 'microseconds kept',
    figures: 'timestamp',
    targetType: () => 'timestamp without time zone',
  },
  {
    redshift: 'TIMESTAMPTZ',
    dataTypes: ['timestamp with time zone'],
    postgres: 'timestamp with time zone',
    note: 'written in UTC (+00)',
    figures: 'timestamptz',
    targetType: () => 'timestamp with time zone',
  },
  {
    redshift: 'SUPER',
    dataTypes: ['super', 'jsonb', 'json'],
    postgres: 'jsonb',
    note: 'JSON text; a SQL NULL stays NULL (JSON_SERIALIZE alone would write the JSON text null)',
    unloadAs: 'CASE WHEN {column} IS NULL THEN NULL ELSE JSON_SERIALIZE({column}) END',
    // A SUPER value holds up to about a block (1 MB), and JSON_SERIALIZE fails on one whose
    // text passes VARCHAR's limit; JSON_SIZE is the same length, in bytes, without that limit
    // (docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html, r_json_size.html).
    convertedBytes: 'JSON_SIZE({column})',
    figures: 'nulls',
    targetType: () => 'jsonb',
  },
  {
    redshift: 'VARBYTE',
    dataTypes: ['binary varying', 'varbyte', 'varbinary', 'bytea'],
    postgres: 'bytea',
    note: "PostgreSQL's hex form \\x..., with CHR(92) for the backslash so the SQL holds none",
    unloadAs: "CHR(92) || 'x' || FROM_VARBYTE({column}, 'hex')",
    // A VARBYTE holds up to 16,777,216 bytes (r_VARBYTE_type.html) and FROM_VARBYTE returns a
    // VARCHAR (r_FROM_VARBYTE.html): `\x` and two hex digits a byte.
    convertedBytes: '2 + 2 * OCTET_LENGTH({column})',
    figures: 'nulls',
    targetType: () => 'bytea',
  },
  {
    redshift: 'GEOMETRY',
    dataTypes: ['geometry'],
    postgres: 'text',
    note: "hex EWKB; PostGIS's geometry type reads this text too, so a live table may declare the column geometry",
    unloadAs: 'ST_AsHexEWKB({column})',
    // ST_AsHexEWKB returns a VARCHAR and "if the result is larger than a 64-KB VARCHAR, then an
    // error is returned" (ST_AsHexEWKB-function.html), while a GEOMETRY holds up to about 1 MB.
    // ST_AsEWKB gives the same EWKB as VARBYTE (ST_AsEWKB-function.html), whose bytes
    // OCTET_LENGTH counts (r_OCTET_LENGTH.html): two hex digits a byte.
    convertedBytes: '2 * OCTET_LENGTH(ST_AsEWKB({column}))',
    figures: 'nulls',
    targetType: () => 'text',
  },
];

/** The type map's entry for a source column, or null for a type it does not cover. */
export function typeMapEntryFor(column: SourceColumn): TypeMapEntry | null {
  return TYPE_MAP.find((entry) => entry.dataTypes.includes(column.dataType)) ?? null;
}

/** The PostgreSQL type a first run gives a source column; refuses types the map lacks. */
export function targetTypeFor(column: SourceColumn, source: QualifiedName): string {
  const entry = typeMapEntryFor(column);
  if (!entry) {
    throw new ConfigError(
      `column ${displayIdentifier(column.name)} of ${displayQualified(source)} has Redshift type ${JSON.stringify(column.dataType)}, which the type map does not cover (supported: ${TYPE_MAP.filter(
        (known) => !known.standIn,
      )
        .map((known) => known.redshift)
        .join(
          ', ',
        )}). Create the live table in Aurora yourself with a type that accepts the column's text form, or sync a view that casts the column; the next run takes the types from the live table.`,
    );
  }
  return entry.targetType(column);
}

/** `numeric(p,s)` -> s; `numeric` -> null (any scale). */
function numericScaleOf(targetType: string): number | null | undefined {
  const match = /^numeric(?:\((\d+)(?:,\s*(\d+))?\))?$/.exec(targetType);
  if (!match) return undefined;
  if (match[1] === undefined) return null;
  return Number(match[2] ?? 0);
}

/**
 * The figure family a PostgreSQL type (as format_type prints it) gives figures for, or null.
 * Types whose text would differ from Redshift's at the same value are left out: timestamps
 * with fewer than 6 fractional digits round, and fixed-length character pads.
 */
function targetFamily(targetType: string): FigureKind | null {
  const type = targetType.trim().toLowerCase();
  if (['smallint', 'integer', 'bigint'].includes(type)) return 'integer';
  if (numericScaleOf(type) !== undefined) return 'decimal';
  if (type === 'real') return 'float4';
  if (type === 'double precision') return 'float8';
  if (type === 'boolean') return 'boolean';
  if (type === 'date') return 'date';
  if (/^timestamp(\(6\))? without time zone$/.test(type)) return 'timestamp';
  if (/^timestamp(\(6\))? with time zone$/.test(type)) return 'timestamptz';
  if (type === 'text' || /^character varying(\(\d+\))?$/.test(type)) return 'octets';
  return null;
}

/**
 * The figures the quality gate compares for a column: its family's when source and target
 * agree on it (and, for decimals, on the scale, since both print every digit of the scale),
 * else only the null count.
 */
export function figureKindFor(column: SourceColumn, targetType: string): FigureKind {
  const source = typeMapEntryFor(column)?.figures ?? 'nulls';
  const target = targetFamily(targetType);
  if (source === 'nulls' || source !== target) return 'nulls';
  if (source === 'decimal') {
    const targetScale = numericScaleOf(targetType.trim().toLowerCase());
    if (targetScale !== null && targetScale !== (column.numericScale ?? null)) return 'nulls';
  }
  return source;
}
