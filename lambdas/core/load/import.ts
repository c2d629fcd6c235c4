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
import type { DataFile } from '../transfer/types';
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

/** One file to import, and where its fields go: a staging table, or a reconcile's key table. */
export interface FileToImport {
  readonly file: DataFile;
  readonly staging: QualifiedName;
  /** The columns the file's fields fill, in the file's order. */
  readonly columns: readonly string[];
}

export interface ImportPoolOptions {
  /** The bucket's AWS region. */
  readonly region: string;
  /** How many imports run at once (COPYs into one table run side by side). */
  readonly concurrency: number;
  /** The index of the first file to import; default 0. */
  readonly from?: number;
  /** Asked before each file is started: false stops starting files (a caller's time budget). */
  readonly keepStarting?: () => boolean;
  /** Called once per imported file, as it is imported. */
  readonly onImported?: (item: FileToImport, imported: ImportedFile) => void;
}

/**
 * Imports `files` from `options.from` on, `concurrency` at a time, until they are all in or
 * `keepStarting` says to stop. After the first failure no further file is started; every
 * import already running ends before this returns or throws, so none outlives the caller.
 * Returns the index of the first file not imported; throws the first failure.
 */
export async function importFilesFrom(
  db: SqlClient,
  files: readonly FileToImport[],
  options: ImportPoolOptions,
): Promise<number> {
  const { concurrency } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new ConfigError(`import concurrency is ${concurrency}; give a whole number, 1 or more.`);
  }
  let next = options.from ?? 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < files.length && (options.keepStarting?.() ?? true)) {
      const item = files[next]!;
      next += 1;
      try {
        // Imported first: an optional call would skip evaluating its arguments without a listener.
        const imported = await importFile(db, { ...item, region: options.region });
        options.onImported?.(item, imported);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const outcomes = await Promise.allSettled(Array.from({ length: concurrency }, worker));
  const failure = outcomes.find((outcome) => outcome.status === 'rejected');
  if (failure) throw failure.reason;
  return next;
}
