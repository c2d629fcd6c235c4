/**
 * Importing UNLOAD's files into a staging table with Aurora's `aws_s3` extension: one file
 * per statement (one Data API call), each checked against the record count the manifest
 * lists for it.
 */
import { ConfigError } from '../errors';
import {
  displayQualified,
  type QualifiedName,
  quoteIdentifier,
  quoteQualified,
} from '../identifiers';
import type { SqlClient } from '../sql-client';
import type { DataFile, TableTransfer } from '../transfer/types';
import {
  DataApiTimeoutError,
  FileImportError,
  ImportTimeoutError,
  RecordCountError,
} from './errors';

/**
 * COPY options matching what UNLOAD writes: text format, `|` between fields, `\N` for NULL,
 * backslash escapes (text format's own), UTF-8.
 */
export const COPY_OPTIONS = `(FORMAT text, DELIMITER '|', NULL '\\N', ENCODING 'UTF8')`;

/**
 * The statement Aurora runs for one file. `aws_s3` puts `table_name` and `column_list` into
 * its COPY as SQL text, so they are passed (as parameters, never spliced here) holding
 * quoted identifiers: `"schema"."table"` and `"a", "b"`.
 */
export function buildImportStatement(): string {
  return `SELECT aws_s3.table_import_from_s3(:tableName, :columnList, :options, aws_commons.create_s3_uri(:bucket, :key, :region)) AS result`;
}

export interface ImportFileInput {
  readonly staging: QualifiedName;
  /** The columns the file's fields fill, in the file's order. */
  readonly columns: readonly string[];
  readonly file: DataFile;
  /** The bucket's AWS region. */
  readonly region: string;
}

export interface ImportedFile {
  readonly key: string;
  readonly rows: number;
  readonly bytes: number;
}

/** The parameters of buildImportStatement() for one file. */
export function importParameters(input: ImportFileInput): Record<string, string> {
  return {
    tableName: quoteQualified(input.staging),
    columnList: input.columns.map(quoteIdentifier).join(', '),
    options: COPY_OPTIONS,
    bucket: input.file.bucket,
    key: input.file.key,
    region: input.region,
  };
}

const IMPORT_RESULT = /^(\d+) rows imported into relation .* of (\d+) bytes\s*$/s;

/** Reads `N rows imported into relation "x" from file y of B bytes`; null if it says otherwise. */
export function parseImportResult(text: string): { rows: number; bytes: number } | null {
  const match = IMPORT_RESULT.exec(text);
  if (!match) return null;
  return { rows: Number(match[1]), bytes: Number(match[2]) };
}

function fileName(file: DataFile): string {
  return `s3://${file.bucket}/${file.key}`;
}

/**
 * Imports one file into staging. The COPY is one statement: when it fails or is cut off,
 * none of the file's rows stay. Fails unless it loaded exactly the manifest's record count.
 */
export async function importFile(db: SqlClient, input: ImportFileInput): Promise<ImportedFile> {
  const { file } = input;
  const name = fileName(file);
  let result: string;
  try {
    const [row] = await db.query<{ result: string }>(
      buildImportStatement(),
      importParameters(input),
    );
    result = String(row?.result ?? '');
  } catch (error) {
    if (error instanceof DataApiTimeoutError) {
      throw new ImportTimeoutError(
        `the import of ${name} (${file.bytes} bytes) did not finish within the Data API's 45 s limit and was rolled back; lower unload.maxFileSizeMb so that each file imports in time.`,
        file.key,
        { cause: error },
      );
    }
    throw new FileImportError(
      `the import of ${name} into ${displayQualified(input.staging)} failed: ${(error as Error).message}`,
      file.key,
      { cause: error },
    );
  }
  const imported = parseImportResult(result);
  if (!imported) {
    throw new FileImportError(
      `the import of ${name} returned ${JSON.stringify(result)}, not "N rows imported into relation ... of B bytes"; check that the aws_s3 extension is Aurora's.`,
      file.key,
    );
  }
  if (imported.rows !== file.records) {
    throw new RecordCountError(
      `the import of ${name} loaded ${imported.rows} rows, but the UNLOAD manifest lists ${file.records} records for it; the file is not what UNLOAD wrote. ${displayQualified(input.staging)} now holds a partial load: start the table's load again (its staging table is re-created).`,
      file.key,
      file.records,
      imported.rows,
    );
  }
  return { key: file.key, rows: imported.rows, bytes: imported.bytes };
}

export type FileOutcome =
  | ({ readonly status: 'imported' } & ImportedFile)
  | { readonly status: 'failed'; readonly key: string; readonly error: Error }
  /** Not started: an earlier file failed. */
  | { readonly status: 'skipped'; readonly key: string };

export interface ImportReport {
  /** True when every file was imported. */
  readonly complete: boolean;
  readonly rows: number;
  readonly bytes: number;
  /** Every file's outcome, in the order given. */
  readonly files: readonly FileOutcome[];
}

export const DEFAULT_IMPORT_CONCURRENCY = 4;

/**
 * Imports a table's files into its staging table, `concurrency` at a time (COPYs into one
 * table run side by side). After the first failure no further file is started; the ones
 * already running finish. Reports every file's outcome.
 */
export async function importFiles(
  db: SqlClient,
  transfer: TableTransfer,
  files: readonly DataFile[],
  options: { readonly region: string; readonly concurrency?: number },
): Promise<ImportReport> {
  const concurrency = options.concurrency ?? DEFAULT_IMPORT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new ConfigError(
      `import concurrency is ${concurrency}; give a whole number, 1 or more (default ${DEFAULT_IMPORT_CONCURRENCY}).`,
    );
  }
  const columns = transfer.columns.map((column) => column.name);
  const outcomes: FileOutcome[] = files.map((file) => ({ status: 'skipped', key: file.key }));
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < files.length) {
      const index = next++;
      const file = files[index]!;
      try {
        const imported = await importFile(db, {
          staging: transfer.staging,
          columns,
          file,
          region: options.region,
        });
        outcomes[index] = { status: 'imported', ...imported };
      } catch (error) {
        failed = true;
        outcomes[index] = { status: 'failed', key: file.key, error: error as Error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, worker));
  const imported = outcomes.filter((outcome) => outcome.status === 'imported');
  return {
    complete: !failed,
    rows: imported.reduce((sum, outcome) => sum + outcome.rows, 0),
    bytes: imported.reduce((sum, outcome) => sum + outcome.bytes, 0),
    files: outcomes,
  };
}
