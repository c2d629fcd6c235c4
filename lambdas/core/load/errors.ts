/**
 * What can go wrong on the Aurora side of the data path, each with a name a caller (and Step
 * Functions) can branch on and a message that says what to do.
 */
import { SyncError } from '../errors';

/**
 * The transport cut a statement off before it finished: the RDS Data API ends every call
 * after 45 s and cancels the statement with it. The statement rolled back. Raised by the
 * Data API adapter; lives here, in the core, so that the core can recognise it without
 * depending on an SDK.
 */
export class DataApiTimeoutError extends SyncError {}

/** One data file could not be imported into its staging table. */
export class FileImportError extends SyncError {
  constructor(
    message: string,
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A file's import loaded another number of rows than the UNLOAD manifest lists for it. */
export class RecordCountError extends FileImportError {
  constructor(
    message: string,
    key: string,
    readonly expected: number,
    readonly imported: number,
  ) {
    super(message, key);
  }
}

/** A file's import was cut off by the Data API's time limit; it rolled back, nothing of it was loaded. */
export class ImportTimeoutError extends FileImportError {}

/** Staging does not match the source's figures; nothing was published. */
export class QualityGateError extends SyncError {
  constructor(
    message: string,
    readonly problems: readonly string[],
    /** The failing figures side by side (figure | Redshift | staging). */
    readonly report: string,
  ) {
    super(message);
  }
}
