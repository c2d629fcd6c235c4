/**
 * SqlClient over the RDS Data API (Lambda to Aurora PostgreSQL, no connection to hold). Each
 * query is one ExecuteStatement call: one statement, `:name` parameters, no session carried
 * to the next call unless both share a transaction id (withTransaction).
 *
 * The Data API ends every call after 45 s. By default it cancels the statement with it; a
 * `longRunning` query sets continueAfterTimeout, so the statement keeps running in Aurora while
 * the call still fails with the timeout, and the caller confirms completion another way.
 */
import {
  BadRequestException,
  BeginTransactionCommand,
  CommitTransactionCommand,
  type SqlParameter as DataApiParameter,
  DatabaseErrorException,
  DatabaseResumingException,
  ExecuteStatementCommand,
  type RDSDataClient,
  RollbackTransactionCommand,
  StatementTimeoutException,
} from '@aws-sdk/client-rds-data';
import { ConfigError, DatabaseError, InternalError, SyncError } from '../core/errors';
import { DataApiTimeoutError } from '../core/load/errors';
import {
  type QueryOptions,
  type Row,
  type SqlClient,
  type SqlParameter,
  type SqlParameters,
  type TransactionalSqlClient,
  toPositionalParameters,
} from '../core/sql-client';

/** The Aurora cluster and database a client talks to, and the secret it signs in with. */
export interface RdsDataTarget {
  readonly resourceArn: string;
  readonly secretArn: string;
  readonly database: string;
}

/** How long to keep retrying while Aurora Serverless v2 resumes from zero capacity. */
export interface ResumeRetry {
  /** Calls in all, the first included. */
  readonly attempts: number;
  /** Wait before the first retry; doubled for each further one. */
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
}

/** A resume from zero capacity takes about 15 s; these waits add up to about 45 s. */
export const DEFAULT_RESUME_RETRY: ResumeRetry = {
  attempts: 6,
  initialDelayMs: 1_000,
  maxDelayMs: 16_000,
};

export interface RdsDataSqlClientOptions {
  readonly resumeRetry?: ResumeRetry;
  readonly sleep?: (ms: number) => Promise<void>;
}

/** Aurora was still resuming after every retry. Nothing ran; try again later. */
export class DatabaseResumingError extends SyncError {}

const SQLSTATE_SUFFIX = /;\s*SQLState:\s*([0-9A-Z]{5})\s*$/;

/**
 * A database error as the Data API reports it: PostgreSQL's message, then
 * `; SQLState: 55P03` (the only place the SQLSTATE appears).
 */
export function parseDataApiErrorMessage(message: string): {
  message: string;
  sqlState: string | undefined;
} {
  const match = SQLSTATE_SUFFIX.exec(message);
  const text = match ? message.slice(0, match.index) : message;
  return { message: text.replace(/^ERROR:\s*/, ''), sqlState: match?.[1] };
}

function toDataApiParameter(name: string, value: SqlParameter): DataApiParameter {
  if (value === null) return { name, value: { isNull: true } };
  if (typeof value === 'string') return { name, value: { stringValue: value } };
  if (typeof value === 'boolean') return { name, value: { booleanValue: value } };
  if (!Number.isFinite(value)) {
    throw new ConfigError(
      `SQL parameter :${name} is ${value}, which the RDS Data API cannot carry; pass it as text and cast it in SQL.`,
    );
  }
  return Number.isSafeInteger(value)
    ? { name, value: { longValue: value } }
    : { name, value: { doubleValue: value } };
}

function toSyncError(error: unknown, options: QueryOptions = {}): unknown {
  if (
    error instanceof DatabaseErrorException ||
    // The first Data API (Aurora Serverless v1) reported SQL errors this way.
    (error instanceof BadRequestException && SQLSTATE_SUFFIX.test(error.message))
  ) {
    const parsed = parseDataApiErrorMessage(error.message);
    return new DatabaseError(parsed.message, parsed.sqlState, { cause: error });
  }
  if (error instanceof StatementTimeoutException) {
    return new DataApiTimeoutError(
      options.longRunning
        ? `the statement did not finish within the RDS Data API's 45 s limit; it keeps running in Aurora (continueAfterTimeout), so its completion must be confirmed another way: ${error.message}`
        : `the statement did not finish within the RDS Data API's 45 s limit and was cancelled (it rolled back): ${error.message}`,
      { cause: error },
    );
  }
  return error;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class RdsDataSqlClient implements TransactionalSqlClient {
  private readonly resumeRetry: ResumeRetry;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly client: RDSDataClient,
    private readonly target: RdsDataTarget,
    options: RdsDataSqlClientOptions = {},
    /** Set on the client withTransaction hands out: every call joins that transaction. */
    private readonly transactionId?: string,
  ) {
    this.resumeRetry = options.resumeRetry ?? DEFAULT_RESUME_RETRY;
    this.sleep = options.sleep ?? realSleep;
  }

  async query<R extends Row = Row>(
    sql: string,
    parameters: SqlParameters = {},
    options: QueryOptions = {},
  ): Promise<R[]> {
    // The same refusals as PgSqlClient: more than one statement, missing or unused parameters.
    toPositionalParameters(sql, parameters);
    const output = await this.send(
      () =>
        this.client.send(
          new ExecuteStatementCommand({
            ...this.target,
            sql,
            parameters: Object.entries(parameters).map(([name, value]) =>
              toDataApiParameter(name, value),
            ),
            formatRecordsAs: 'JSON',
            ...(this.transactionId ? { transactionId: this.transactionId } : {}),
            ...(options.longRunning ? { continueAfterTimeout: true } : {}),
          }),
        ),
      options,
    );
    return output.formattedRecords ? (JSON.parse(output.formattedRecords) as R[]) : [];
  }

  /**
   * Runs `fn` in one transaction: every call it makes through the client it is given carries
   * the transaction id. Commits when `fn` resolves, rolls back when it throws. The Data API
   * rolls back a transaction left without a call for 3 minutes.
   */
  async withTransaction<T>(fn: (db: SqlClient) => Promise<T>): Promise<T> {
    if (this.transactionId) {
      throw new InternalError(
        'withTransaction was called inside a transaction; the RDS Data API has no nested transactions: use the client you were given.',
      );
    }
    const { resourceArn, secretArn, database } = this.target;
    const { transactionId } = await this.send(() =>
      this.client.send(new BeginTransactionCommand({ resourceArn, secretArn, database })),
    );
    const inTransaction = new RdsDataSqlClient(
      this.client,
      this.target,
      { resumeRetry: this.resumeRetry, sleep: this.sleep },
      transactionId!,
    );
    let result: T;
    try {
      result = await fn(inTransaction);
    } catch (error) {
      // The error from fn is the one to report; a failed rollback ends with the Data API's
      // own timeout anyway.
      await this.send(() =>
        this.client.send(new RollbackTransactionCommand({ resourceArn, secretArn, transactionId })),
      ).catch(() => {});
      throw error;
    }
    await this.send(() =>
      this.client.send(new CommitTransactionCommand({ resourceArn, secretArn, transactionId })),
    );
    return result;
  }

  /** Sends a command, retrying while Aurora resumes; maps Data API errors to the core's. */
  private async send<Output>(
    call: () => Promise<Output>,
    options: QueryOptions = {},
  ): Promise<Output> {
    let delayMs = this.resumeRetry.initialDelayMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        if (!(error instanceof DatabaseResumingException)) throw toSyncError(error, options);
        if (attempt >= this.resumeRetry.attempts) {
          throw new DatabaseResumingError(
            `Aurora was still resuming after ${attempt} attempts; nothing ran. Try again in a minute, or keep the cluster's minimum capacity above 0 ACUs while the pipeline runs.`,
            { cause: error },
          );
        }
        await this.sleep(delayMs);
        delayMs = Math.min(delayMs * 2, this.resumeRetry.maxDelayMs);
      }
    }
  }
}
