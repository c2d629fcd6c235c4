/**
 * Values too long to unload. SUPER, VARBYTE and GEOMETRY columns go out as text (JSON, `\x`
 * hex, hex EWKB) that Redshift makes a VARCHAR, which holds at most 65535 bytes
 * (https://docs.aws.amazon.com/redshift/latest/dg/r_Character_types.html). A longer one fails
 * the UNLOAD, and with it the whole one-snapshot transaction, with an error that names neither
 * table, column nor row: JSON_SERIALIZE "returns an error when the JSON format exceeds the
 * varchar limit" (https://docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html), and
 * what FROM_VARBYTE does past the limit is not documented at all, so it may as well cut the
 * value short. Either way the run must stop before any UNLOAD, saying which values are the
 * cause: one count query per table with such columns runs first in the unload transaction
 * (same snapshot as the UNLOADs, so no value can change in between), and the run is refused
 * when any count is not 0.
 */
import { ConfigError } from '../errors';
import { displayIdentifier, displayQualified, quoteQualified } from '../identifiers';
import type { TableTransfer } from '../transfer/types';

/** The most bytes a Redshift VARCHAR holds (r_Character_types.html: 65535 bytes, 64K - 1). */
export const MAX_CONVERTED_BYTES = 65_535;

/** The run stopped before unloading: some values would not fit their text form. */
export class OversizedValuesError extends ConfigError {}

/**
 * Per column whose converted text may pass the limit, how many rows it does so in; null when
 * the table has no such column. Counts come back as text, like the figures query's.
 */
export function buildOversizeQuery(transfer: TableTransfer): string | null {
  const counts = transfer.columns.flatMap((column, index) =>
    column.convertedBytes === undefined
      ? []
      : [
          `CAST(COUNT(CASE WHEN ${column.convertedBytes} > ${MAX_CONVERTED_BYTES} THEN 1 END) AS VARCHAR(100)) AS c${index}_oversized`,
        ],
  );
  if (counts.length === 0) return null;
  return `SELECT ${counts.join(', ')} FROM ${quoteQualified(transfer.table.source)}`;
}

export interface OversizedColumn {
  readonly column: string;
  readonly rows: number;
}

/** Reads buildOversizeQuery's one row: the columns with values too long, and in how many rows. */
export function parseOversized(
  row: Readonly<Record<string, unknown>>,
  transfer: TableTransfer,
): OversizedColumn[] {
  return transfer.columns.flatMap((column, index) => {
    if (column.convertedBytes === undefined) return [];
    const key = `c${index}_oversized`;
    const rows = Number(row[key] ?? Number.NaN);
    if (!Number.isSafeInteger(rows) || rows < 0) {
      throw new Error(
        `the oversize count ${key} of ${displayQualified(transfer.table.source)} is ${JSON.stringify(row[key])}, not a whole number; the count query's result is not what it should be.`,
      );
    }
    return rows === 0 ? [] : [{ column: column.name, rows }];
  });
}

/** The refusal for the tables with values too long; null when there are none. */
export function oversizedValuesError(
  found: readonly {
    readonly transfer: TableTransfer;
    readonly columns: readonly OversizedColumn[];
  }[],
): OversizedValuesError | null {
  const lines = found
    .filter((entry) => entry.columns.length > 0)
    .map(({ transfer, columns }) => {
      const listed = columns
        .map(
          ({ column, rows }) =>
            `column ${displayIdentifier(column)} in ${rows} row${rows === 1 ? '' : 's'}`,
        )
        .join(', ');
      return `${displayQualified(transfer.table.source)}: ${listed}`;
    });
  if (lines.length === 0) return null;
  return new OversizedValuesError(
    `nothing was unloaded: some values are longer than the ${MAX_CONVERTED_BYTES} bytes of text Redshift can make of them (JSON for SUPER; \\x and two hex digits a byte for VARBYTE, so at most ${Math.floor((MAX_CONVERTED_BYTES - 2) / 2)} bytes; hex EWKB for GEOMETRY, at most ${Math.floor(MAX_CONVERTED_BYTES / 2)} bytes of EWKB) - ${lines.join('; ')}. Sync a view that leaves the column out (or shortens it, e.g. a part of the JSON) instead of the table, or shorten those values in Redshift, then run again.`,
  );
}
