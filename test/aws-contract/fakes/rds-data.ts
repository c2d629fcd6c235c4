/**
 * The RDS Data API over a local PostgreSQL standing in for Aurora: one statement per call,
 * `:name` parameters, transactions only through transactionId, the per-call cut-off with
 * continueAfterTimeout, the response size limit, and database errors as DatabaseErrorException
 * with the SQLSTATE at the end of the message. Calls are authorized as the Data API authorizes
 * them: rds-data:<Action> on the cluster, and secretsmanager:GetSecretValue on the secret,
 * which the Data API reads with the caller's permissions
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api.access.html).
 */
import { randomUUID } from 'node:crypto';
import {
  AccessDeniedException,
  BadRequestException,
  type BeginTransactionCommandInput,
  type BeginTransactionCommandOutput,
  type CommitTransactionCommandInput,
  type CommitTransactionCommandOutput,
  DatabaseErrorException,
  type ExecuteStatementCommandInput,
  type ExecuteStatementCommandOutput,
  type Field,
  type RollbackTransactionCommandInput,
  type RollbackTransactionCommandOutput,
  type SqlParameter,
  StatementTimeoutException,
  TransactionNotFoundException,
} from '@aws-sdk/client-rds-data';
import pg from 'pg';
import {
  toPositionalParameters,
  type SqlParameter as Value,
} from '../../../lambdas/core/sql-client';
import { DATA_API_VALUE_TYPES } from '../../../local/emulators/session-setup';
import type { Authorize, AwsPrincipal } from '../access';
import { AWS_LIMITS, jsonBytes } from '../limits';
import { authorizeOrThrow, sdkError } from './sdk-errors';

export interface RdsDataFakeOptions {
  /** The cluster the fake stands for, and the secret its callers must name. */
  readonly clusterArn: string;
  readonly secretArn: string;
  readonly database: string;
  /** What the secret holds: a connection to the database as the role the secret signs in as. */
  readonly connectionUrl: string;
  readonly authorize: Authorize;
  /** The per-call cut-off; AWS_LIMITS.rdsData.callTimeoutMs (45 s) unless scaled down for tests. */
  readonly callTimeoutMs?: number;
  /** Sees each statement and its parameters once authorized, before it runs; may throw to refuse it. */
  readonly beforeStatement?: (sql: string, parameters: Readonly<Record<string, Value>>) => void;
}

/** The typeHint values ExecuteStatement accepts (API_SqlParameter.html). */
const TYPE_HINTS = new Set(['JSON', 'UUID', 'TIMESTAMP', 'DATE', 'TIME', 'DECIMAL']);

interface Transaction {
  readonly client: pg.PoolClient;
}

export class RdsDataFake {
  private readonly pool: pg.Pool;
  private readonly transactions = new Map<string, Transaction>();
  /** Statements left running after their call timed out (continueAfterTimeout). */
  private readonly continuing = new Set<Promise<unknown>>();
  private readonly callTimeoutMs: number;

  constructor(private readonly options: RdsDataFakeOptions) {
    this.pool = new pg.Pool({
      connectionString: options.connectionUrl,
      application_name: 'rds-data-api fake',
      max: 20,
    });
    this.pool.on('error', () => {});
    this.callTimeoutMs = options.callTimeoutMs ?? AWS_LIMITS.rdsData.callTimeoutMs;
  }

  async executeStatement(
    principal: AwsPrincipal,
    input: ExecuteStatementCommandInput,
  ): Promise<ExecuteStatementCommandOutput> {
    this.authorizeCall(principal, 'rds-data:ExecuteStatement', input);
    const { text, values } = this.bind(input.sql ?? '', input.parameters ?? []);
    const transaction = input.transactionId ? this.transaction(input.transactionId) : undefined;
    const client = transaction?.client ?? (await this.pool.connect());
    const pid = processId(client);
    const running = client.query({ text, values, types: DATA_API_VALUE_TYPES }).finally(() => {
      if (!transaction) client.release();
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.callTimeoutMs);
    });
    let result: pg.QueryResult | 'timeout';
    try {
      result = await Promise.race([running, timedOut]);
    } catch (error) {
      throw this.databaseError(error);
    } finally {
      clearTimeout(timer);
    }
    if (result === 'timeout') {
      if (input.continueAfterTimeout) {
        // "the statement continues to run after the call times out"; its outcome is lost.
        const left = running.catch(() => {});
        this.continuing.add(left);
        void left.finally(() => this.continuing.delete(left));
      } else {
        // Without it the Data API cancels the statement (it rolls back).
        await this.cancelBackend(pid);
        await running.catch(() => {});
      }
      throw sdkError(StatementTimeoutException, 'Request timed out', 400, {
        dbConnectionId: pid,
      });
    }
    return this.output(result, input);
  }

  async beginTransaction(
    principal: AwsPrincipal,
    input: BeginTransactionCommandInput,
  ): Promise<BeginTransactionCommandOutput> {
    this.authorizeCall(principal, 'rds-data:BeginTransaction', input);
    const client = await this.pool.connect();
    await client.query('BEGIN');
    const transactionId = randomUUID();
    this.transactions.set(transactionId, { client });
    return { $metadata: { httpStatusCode: 200 }, transactionId };
  }

  async commitTransaction(
    principal: AwsPrincipal,
    input: CommitTransactionCommandInput,
  ): Promise<CommitTransactionCommandOutput> {
    return this.endTransaction(principal, input, 'COMMIT');
  }

  async rollbackTransaction(
    principal: AwsPrincipal,
    input: RollbackTransactionCommandInput,
  ): Promise<RollbackTransactionCommandOutput> {
    return this.endTransaction(principal, input, 'ROLLBACK');
  }

  async close(): Promise<void> {
    for (const [id, { client }] of this.transactions) {
      this.transactions.delete(id);
      await client.query('ROLLBACK').catch(() => {});
      client.release();
    }
    await Promise.allSettled([...this.continuing]);
    await this.pool.end();
  }

  private async endTransaction(
    principal: AwsPrincipal,
    input: CommitTransactionCommandInput,
    command: 'COMMIT' | 'ROLLBACK',
  ): Promise<CommitTransactionCommandOutput & RollbackTransactionCommandOutput> {
    this.authorizeCall(
      principal,
      command === 'COMMIT' ? 'rds-data:CommitTransaction' : 'rds-data:RollbackTransaction',
      input,
    );
    const id = input.transactionId ?? '';
    const { client } = this.transaction(id);
    this.transactions.delete(id);
    try {
      // COMMIT of a transaction that failed rolls it back, as PostgreSQL does.
      const result = await client.query(command);
      const committed = command === 'COMMIT' && result.command === 'COMMIT';
      return {
        $metadata: { httpStatusCode: 200 },
        transactionStatus: committed ? 'Transaction Committed' : 'Rollback Complete',
      };
    } catch (error) {
      throw this.databaseError(error);
    } finally {
      client.release();
    }
  }

  private transaction(id: string): Transaction {
    const transaction = this.transactions.get(id);
    if (!transaction) {
      throw sdkError(TransactionNotFoundException, `Transaction ${id} is not found`, 404);
    }
    return transaction;
  }

  private authorizeCall(
    principal: AwsPrincipal,
    action: string,
    input: { resourceArn?: string; secretArn?: string },
  ): void {
    const denied = (message: string) => sdkError(AccessDeniedException, message, 403);
    authorizeOrThrow(
      this.options.authorize,
      principal,
      { action, resource: input.resourceArn ?? '' },
      denied,
    );
    authorizeOrThrow(
      this.options.authorize,
      principal,
      { action: 'secretsmanager:GetSecretValue', resource: input.secretArn ?? '' },
      denied,
    );
    if (input.resourceArn !== this.options.clusterArn) {
      throw sdkError(
        BadRequestException,
        `HttpEndpoint is not enabled for resource ${input.resourceArn}`,
      );
    }
    if (input.secretArn !== this.options.secretArn) {
      throw sdkError(
        BadRequestException,
        `Secrets Manager can't find the specified secret ${input.secretArn}`,
      );
    }
  }

  /** `:name` parameters to PostgreSQL's `$n`; more than one statement is refused. */
  private bind(sql: string, parameters: readonly SqlParameter[]) {
    const values: Record<string, Value> = {};
    for (const parameter of parameters) {
      if (parameter.typeHint && !TYPE_HINTS.has(parameter.typeHint)) {
        throw sdkError(BadRequestException, `Invalid typeHint ${parameter.typeHint}`);
      }
      // A typeHint'ed value is sent as text; PostgreSQL infers its type from where it is used.
      values[parameter.name ?? ''] = parameterValue(parameter.value);
    }
    this.options.beforeStatement?.(sql, values);
    try {
      return toPositionalParameters(sql, values);
    } catch (error) {
      throw sdkError(BadRequestException, (error as Error).message);
    }
  }

  private output(
    result: pg.QueryResult,
    input: ExecuteStatementCommandInput,
  ): ExecuteStatementCommandOutput {
    const base = { $metadata: { httpStatusCode: 200 }, numberOfRecordsUpdated: 0 };
    const hasRows = result.fields.length > 0;
    if (!hasRows) return { ...base, numberOfRecordsUpdated: result.rowCount ?? 0 };
    // "formatRecordsAs ... only applies to SELECT statements and is ignored for other types of
    // statements" (API_ExecuteStatement.html): an INSERT/UPDATE/DELETE ... RETURNING gets records.
    if (input.formatRecordsAs === 'JSON' && result.command === 'SELECT') {
      const formattedRecords = JSON.stringify(result.rows);
      this.checkSize(Buffer.byteLength(formattedRecords), AWS_LIMITS.rdsData.maxJsonResponseBytes);
      return { ...base, formattedRecords };
    }
    const records = result.rows.map((row: Record<string, unknown>) =>
      result.fields.map((field) => toField(row[field.name])),
    );
    this.checkSize(jsonBytes(records), AWS_LIMITS.rdsData.maxResponseBytes);
    return {
      ...base,
      numberOfRecordsUpdated: result.command === 'SELECT' ? 0 : (result.rowCount ?? 0),
      records,
    };
  }

  private checkSize(bytes: number, limit: number): void {
    if (bytes > limit) {
      // The Data API's wording, as its clients report it.
      throw sdkError(
        BadRequestException,
        'Database returned more than the allowed response size limit',
      );
    }
  }

  /** "<PostgreSQL's message>; SQLState: <code>", as the Data API reports a database error. */
  private databaseError(error: unknown): unknown {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !/^[0-9A-Z]{5}$/.test(code)) return error;
    return sdkError(
      DatabaseErrorException,
      `ERROR: ${(error as Error).message}; SQLState: ${code}`,
    );
  }

  private async cancelBackend(pid: number): Promise<void> {
    const canceller = new pg.Client({ connectionString: this.options.connectionUrl });
    canceller.on('error', () => {});
    await canceller.connect();
    try {
      await canceller.query('SELECT pg_cancel_backend($1)', [pid]);
    } finally {
      await canceller.end();
    }
  }
}

/** The backend's process id (pg sets it on connect; its types do not declare it). */
function processId(client: pg.PoolClient): number {
  return (client as unknown as { processID: number }).processID;
}

function parameterValue(field: Field | undefined): string | number | boolean | null {
  if (!field || field.isNull) return null;
  if (field.stringValue !== undefined) return field.stringValue;
  if (field.longValue !== undefined) return field.longValue;
  if (field.doubleValue !== undefined) return field.doubleValue;
  if (field.booleanValue !== undefined) return field.booleanValue;
  throw sdkError(
    BadRequestException,
    'the fake takes string, long, double, boolean or null values',
  );
}

function toField(value: unknown): Field {
  if (value === null || value === undefined) return { isNull: true };
  if (typeof value === 'boolean') return { booleanValue: value };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { longValue: value } : { doubleValue: value };
  }
  return { stringValue: String(value) };
}
