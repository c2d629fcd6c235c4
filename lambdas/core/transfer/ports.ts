/**
 * The two outside services the data path talks to besides Aurora, as the core sees them. In
 * AWS they are the Redshift Data API and S3; locally, the UNLOAD emulator over a PostgreSQL
 * source and a folder standing in for the bucket. Aurora itself is a `SqlClient`.
 */

/** Where a statement submitted to the warehouse stands. */
export type StatementState =
  | { readonly state: 'running'; readonly status: string }
  | { readonly state: 'done'; readonly status: string }
  | {
      readonly state: 'failed';
      readonly status: string;
      /** Redshift's error text, as it gave it. */
      readonly error: string;
    };

/** A result row; values as the warehouse typed them (text, numbers, booleans, NULL). */
export type WarehouseRow = Readonly<Record<string, string | number | boolean | null>>;

/**
 * Where a call runs: a new session kept open `keepAliveSeconds` after each of its statements
 * finishes, or the session an earlier call opened.
 */
export type WarehouseSession =
  | { readonly keepAliveSeconds: number }
  | { readonly sessionId: string };

/** A statement the warehouse knows, as a listing by name finds it. */
export interface ListedStatement {
  readonly statementId: string;
  /** The name it was submitted with. */
  readonly name: string;
  /** Running, or ended: done (FINISHED as listed) or failed. */
  readonly state: StatementState['state'];
  readonly status: string;
  /** The session it ran on; null when it ran on a connection of its own. */
  readonly sessionId: string | null;
}

/** Redshift through its Data API (asynchronous: submit, then poll). */
export interface Warehouse {
  /**
   * Submits statements that run in order in ONE transaction (one snapshot), all committed
   * or none. Returns the statement id to poll.
   */
  submitBatch(statements: readonly string[], name: string): Promise<string>;
  /** Submits one statement with `:name` parameters (passed as text). */
  submitStatement(
    sql: string,
    parameters: Readonly<Record<string, string>>,
    name: string,
  ): Promise<string>;
  /**
   * Submits statements that run in order on one session's connection, each on its own (no
   * transaction around the call), so a `BEGIN` stays open for the session's later calls until
   * a `COMMIT`. A session runs one call at a time: submit the next once this one is done. The
   * first failed statement fails the call. Returns the statement id and the session's id.
   */
  submitInSession(
    statements: readonly string[],
    name: string,
    session: WarehouseSession,
  ): Promise<{ readonly statementId: string; readonly sessionId: string }>;
  describe(statementId: string): Promise<StatementState>;
  /**
   * Asks the warehouse to stop a statement still running; it then ends as failed (ABORTED).
   * Returns false when the statement had already ended (nothing to stop). An explicit
   * transaction the statement ran in is left aborted, not closed: roll it back on its session.
   */
  cancel(statementId: string): Promise<boolean>;
  /**
   * Every statement, running or ended, whose name starts with `namePrefix` (case-sensitive)
   * and that this caller may cancel or roll back: the ones its identity submitted.
   */
  listStatements(namePrefix: string): Promise<ListedStatement[]>;
  /**
   * Every row of a finished statement; for a batch, of its statement at `index` (0-based,
   * in the order submitted).
   */
  fetchRows(statementId: string, index?: number): Promise<WarehouseRow[]>;
}

/** The run files' bucket. Keys never start with `/`. */
export interface ObjectStore {
  getText(bucket: string, key: string): Promise<string>;
  putText(bucket: string, key: string, text: string): Promise<void>;
  /** Deletes every object under `prefix`; returns how many there were. */
  deletePrefix(bucket: string, prefix: string): Promise<number>;
}
