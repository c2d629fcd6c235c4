/**
 * What can go wrong on the Redshift side of a run, each with a name a caller (and Step
 * Functions) can branch on.
 */
import { SyncError } from '../errors';

/** The source table is missing, or the pipeline's database user cannot see it. */
export class SourceTableError extends SyncError {}

/** A call to the warehouse (the Redshift Data API) failed before Redshift ran anything. */
export class WarehouseError extends SyncError {}

/** Redshift ran a statement and reported it failed or aborted. */
export class StatementFailedError extends SyncError {
  constructor(
    readonly statementId: string,
    /** Redshift's error text, as it gave it. */
    readonly redshiftError: string,
    what: string,
  ) {
    super(`${what} (Redshift statement ${statementId}) failed: ${redshiftError}`);
  }
}

/** A statement was still running when the caller stopped waiting for it. */
export class StatementTimeoutError extends SyncError {}

/** An UNLOAD manifest is not what MANIFEST VERBOSE writes. */
export class ManifestError extends SyncError {}
