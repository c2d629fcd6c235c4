/**
 * Errors that carry a name a caller can branch on (and that Step Functions shows as the
 * error type), a message a person can act on, and the underlying cause.
 */
export class SyncError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * Bad input a person must fix: a config file, an execution input, a command-line flag, a name.
 * Retrying will not help.
 */
export class ConfigError extends SyncError {}

/**
 * A broken invariant of the pipeline itself (a caller passed what no configuration can produce):
 * a bug to report, not something a user can fix by changing their input.
 */
export class InternalError extends SyncError {}

/**
 * The swap cannot be done safely with the chosen strategy (a dependent that cannot be carried
 * over, a staging table that does not match). Nothing was changed.
 */
export class PreflightError extends SyncError {
  constructor(
    message: string,
    readonly problems: readonly string[],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** An error raised by PostgreSQL, with its SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export class DatabaseError extends SyncError {
  constructor(
    message: string,
    readonly sqlState: string | undefined,
    options?: { cause?: unknown; detail?: string; hint?: string },
  ) {
    super(message, options);
    this.detail = options?.detail;
    this.hint = options?.hint;
  }
  readonly detail: string | undefined;
  readonly hint: string | undefined;
}
