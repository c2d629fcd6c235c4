/**
 * The line UNLOAD writes for a row, in Redshift's text format (docs.aws.amazon.com/redshift/
 * latest/dg/r_UNLOAD.html):
 * - values as the server prints them, fields joined by DELIMITER, one line (LF) per row;
 * - with ESCAPE, a backslash before LF, CR, the delimiter and the backslash, in character
 *   (CHAR/VARCHAR) values only;
 * - NULL as the NULL AS text, never escaped (the empty string without NULL AS);
 * - REAL and DOUBLE PRECISION with FLT_DIG (6) or DBL_DIG (15) plus extra_float_digits
 *   significant digits, C's `%g` form, as Redshift prints floats: its extra_float_digits goes
 *   from -15 to 2 (docs.aws.amazon.com/redshift/latest/dg/r_extra_float_digits.html), so a
 *   REAL gets at most 8 digits, one short of the 9 a float4 needs to be read back exactly.
 *   PostgreSQL 12 and later print the shortest exact form instead, which would hide that.
 * The rules live here twice on purpose, kept to the same bytes by the tests: once in Node
 * (formatUnloadLine, the reference, value by value) and once as what the emulator runs:
 * PostgreSQL's COPY text output (copyStatement), its escapes rewritten on byte buffers by
 * unload-text.ts.
 */

import type pg from 'pg';
import type { UnloadOptions } from './unload-parse';

/** A column of the unloaded rows. */
export interface UnloadColumn {
  readonly name: string;
  /** The type's name, for the VERBOSE manifest. */
  readonly type: string;
  /** CHAR/VARCHAR-like: the only values ESCAPE applies to. */
  readonly character: boolean;
  /** Binary (VARBYTE; bytea in the stand-in): printed as bare hex, as Redshift unloads VARBYTE. */
  readonly binary: boolean;
  /** REAL or DOUBLE PRECISION: how many significant digits Redshift prints (see floatText). */
  readonly significantDigits?: number;
}

/** FLT_DIG and DBL_DIG, the digits extra_float_digits is added to. */
export const FLOAT_DIGITS: Readonly<Record<string, { base: number; float4: boolean }>> = {
  real: { base: 6, float4: true },
  'double precision': { base: 15, float4: false },
};

/** Redshift's range of extra_float_digits (r_extra_float_digits.html). */
export const MIN_EXTRA_FLOAT_DIGITS = -15;
export const MAX_EXTRA_FLOAT_DIGITS = 2;

/**
 * A float printed as C's `printf("%.*g", digits, value)`, which is how PostgreSQL printed
 * floats before version 12 and Redshift still describes its output (FLT_DIG or DBL_DIG plus
 * extra_float_digits significant digits). A REAL is first rounded to float4 (Math.fround), so
 * its digits are the float4's own.
 */
export function floatText(number: number, digits: number, float4: boolean): string {
  if (!Number.isFinite(number)) return Number.isNaN(number) ? 'NaN' : String(number);
  const value = float4 ? Math.fround(number) : number;
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const precision = Math.max(1, Math.min(digits, 100));
  const exponent = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(precision)))));
  if (exponent < -4 || exponent >= precision) {
    const [mantissa, power] = value.toExponential(precision - 1).split('e');
    const sign = power!.startsWith('-') ? '-' : '+';
    const magnitude = power!.replace(/^[+-]/, '').padStart(2, '0');
    return `${stripZeros(mantissa!)}e${sign}${magnitude}`;
  }
  return stripZeros(value.toFixed(Math.max(0, precision - 1 - exponent)));
}

/** `%g` drops trailing zeros of the fraction, and the point with them. */
function stripZeros(fixed: string): string {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

export type LineFormat = Pick<UnloadOptions, 'delimiter' | 'nullAs' | 'escape'>;

/**
 * One row as the line UNLOAD writes for it (with its LF), from the server's text forms: the
 * writer's rules in one place, value by value. The emulator itself has PostgreSQL print the
 * rows (copyStatement, unload-text.ts); the tests hold the two to the same bytes.
 */
export function formatUnloadLine(
  values: readonly (string | null)[],
  columns: readonly UnloadColumn[],
  format: LineFormat,
): string {
  const special = escapedCharacters(format.delimiter);
  const fields = values.map((value, index) => {
    if (value === null) return format.nullAs;
    const column = columns[index]!;
    if (column.binary) return value.startsWith('\\x') ? value.slice(2) : value;
    if (column.significantDigits !== undefined) {
      return floatText(Number(value), column.significantDigits, FLOAT_DIGITS[column.type]!.float4);
    }
    if (!format.escape || !column.character) return value;
    return value.replace(special, '\\$&');
  });
  return `${fields.join(format.delimiter)}\n`;
}

/** What ESCAPE puts a backslash before: backslash, LF, CR and the delimiter. */
function escapedSet(delimiter: string): string[] {
  return [...new Set(['\\', '\n', '\r', delimiter])];
}

/** The characters of escapedSet as one pattern per delimiter. */
const ESCAPED_CHARACTERS = new Map<string, RegExp>();

function escapedCharacters(delimiter: string): RegExp {
  let pattern = ESCAPED_CHARACTERS.get(delimiter);
  if (!pattern) {
    const quoted = escapedSet(delimiter)
      .map((character) => character.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'))
      .join('|');
    pattern = new RegExp(quoted, 'g');
    ESCAPED_CHARACTERS.set(delimiter, pattern);
  }
  return pattern;
}

/**
 * The query's columns as the line format needs them: each type's name, whether ESCAPE applies,
 * whether it is bytes, and a float's digits under the session's extra_float_digits.
 */
export async function describeColumns(
  client: pg.ClientBase,
  fields: readonly pg.FieldDef[],
  extraFloatDigits: number,
): Promise<UnloadColumn[]> {
  const types = await client.query<{ oid: number; name: string; category: string }>({
    text: `SELECT t.oid::int AS oid, format_type(t.oid, NULL) AS name, t.typcategory::text AS category
             FROM pg_catalog.pg_type AS t WHERE t.oid = ANY($1::oid[])`,
    values: [fields.map((field) => field.dataTypeID)],
  });
  const byOid = new Map(types.rows.map((type) => [type.oid, type]));
  return fields.map((field) => {
    const type = byOid.get(field.dataTypeID);
    const float = FLOAT_DIGITS[type?.name ?? ''];
    return {
      name: field.name,
      type: type?.name ?? 'unknown',
      character: type?.category === 'S',
      binary: type?.name === 'bytea',
      ...(float ? { significantDigits: float.base + extraFloatDigits } : {}),
    };
  });
}

/** A string as a PostgreSQL literal that reads the same whatever standard_conforming_strings is. */
export function literal(text: string): string {
  return `E'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/** Which rows one slice's COPY reads: every `slices`-th row of the query's order, from `slice`. */
export interface RowsDealt {
  readonly slice: number;
  readonly slices: number;
}

/**
 * The COPY that has PostgreSQL print the query's rows for UNLOAD, in COPY's text format with
 * the UNLOAD's delimiter and `\N` for NULL (unload-text.ts rewrites its escapes into UNLOAD's).
 * Values print as their type's output function prints them, bytes as bare hex, and a REAL or
 * DOUBLE PRECISION as its bits in hex, which Node prints with Redshift's digits (PostgreSQL 12
 * and later print no `%g` form past extra_float_digits 0). The query's columns are renamed by
 * position, so repeated or odd names need no care. With `dealt`, only one slice's rows, dealt
 * round-robin in the query's order as UnloadFileWriter.add deals them.
 */
export function copyStatement(
  query: string,
  columns: readonly UnloadColumn[],
  format: LineFormat,
  dealt?: RowsDealt,
): string {
  const selected = columns.map((column, index) => {
    const ref = `unloaded.c${index + 1}`;
    if (column.binary) return `pg_catalog.encode(${ref}, 'hex')`;
    if (column.significantDigits === undefined) return ref;
    const send = FLOAT_DIGITS[column.type]!.float4 ? 'float4send' : 'float8send';
    return `pg_catalog.encode(pg_catalog.${send}(${ref}), 'hex')`;
  });
  const names = columns.map((_, index) => `c${index + 1}`).join(', ');
  const source = `(\n${query}\n) AS unloaded${columns.length > 0 ? `(${names})` : ''}`;
  const from = dealt
    ? `(SELECT pg_catalog.row_number() OVER () AS unload_row, unloaded.* FROM ${source}) AS unloaded
        WHERE (unloaded.unload_row - 1) % ${dealt.slices} = ${dealt.slice}`
    : source;
  const options = `FORMAT text, DELIMITER ${literal(format.delimiter)}, NULL ${literal('\\N')}`;
  return `COPY (SELECT ${selected.join(', ')} FROM ${from}) TO STDOUT (${options})`;
}
