/**
 * The Warehouse port over the Redshift Data API: statements are submitted, then polled, and
 * their rows read page by page. Throttling is retried by the SDK's own retry strategy (give
 * the client enough `maxAttempts`); any other failure of a call is a WarehouseError naming
 * the call and the target.
 */
import {
  BatchExecuteStatementCommand,
  CancelStatementCommand,
  DescribeStatementCommand,
  type DescribeStatementResponse,
  ExecuteStatementCommand,
  type Field,
  GetStatementResultCommand,
  ListStatementsCommand,
  RedshiftDataClient,
  type RedshiftDataClientConfig,
  type SubStatementData,
} from '@aws-sdk/client-redshift-data';
import { ConfigError } from '../core/errors';
import type {
  ListedStatement,
  StatementState,
  Warehouse,
  WarehouseRow,
  WarehouseSession,
} from '../core/transfer/ports';
import { WarehouseError } from '../core/unload/errors';

/** A provisioned cluster: credentials from a Secrets Manager secret or, as `dbUser`, from GetClusterCredentials. */
export interface ClusterTarget {
  readonly clusterIdentifier: string;
  readonly database: string;
  readonly secretArn?: string;
  readonly dbUser?: string;
}

/** A Redshift Serverless workgroup: a secret, or the caller's IAM identity when none is given. */
export interface WorkgroupTarget {
  readonly workgroupName: string;
  readonly database: string;
  readonly secretArn?: string;
}

export type RedshiftTarget = ClusterTarget | WorkgroupTarget;

/** How the Data API is told where to run a statement and as whom. */
interface TargetParameters {
  readonly Database: string;
  readonly ClusterIdentifier?: string;
  readonly WorkgroupName?: string;
  readonly SecretArn?: string;
  readonly DbUser?: string;
}

/** Enough attempts to ride out the Data API's throttling on a busy account. */
export const DEFAULT_MAX_ATTEMPTS = 8;

/**
 * A client whose standard retry strategy retries throttling (ThrottlingException) with
 * backoff, up to DEFAULT_MAX_ATTEMPTS unless `config` says otherwise.
 */
export function createRedshiftDataClient(
  config: RedshiftDataClientConfig = {},
): RedshiftDataClient {
  return new RedshiftDataClient({ maxAttempts: DEFAULT_MAX_ATTEMPTS, ...config });
}

function nonEmpty(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(`Redshift target: ${what} must be a non-empty string.`);
  }
  return value;
}

/** Checks a target as read from configuration and turns it into Data API parameters. */
export function targetParameters(target: RedshiftTarget): TargetParameters {
  const Database = nonEmpty(target.database, 'database');
  const secretArn =
    target.secretArn === undefined ? undefined : nonEmpty(target.secretArn, 'secretArn');
  if ('workgroupName' in target && 'clusterIdentifier' in target) {
    throw new ConfigError(
      'Redshift target names both a clusterIdentifier and a workgroupName; give clusterIdentifier for a provisioned cluster or workgroupName for Redshift Serverless.',
    );
  }
  if ('workgroupName' in target) {
    if ('dbUser' in target) {
      throw new ConfigError(
        "Redshift target: dbUser works only with a provisioned cluster; for a Serverless workgroup give secretArn, or neither to connect as the caller's IAM identity.",
      );
    }
    return {
      Database,
      WorkgroupName: nonEmpty(target.workgroupName, 'workgroupName'),
      ...(secretArn ? { SecretArn: secretArn } : {}),
    };
  }
  if (!('clusterIdentifier' in target)) {
    throw new ConfigError(
      'Redshift target names neither a clusterIdentifier nor a workgroupName; give one of them.',
    );
  }
  const dbUser = target.dbUser === undefined ? undefined : nonEmpty(target.dbUser, 'dbUser');
  if ((secretArn === undefined) === (dbUser === undefined)) {
    throw new ConfigError(
      `Redshift cluster ${target.clusterIdentifier}: give exactly one of secretArn (credentials in Secrets Manager) or dbUser (temporary credentials through redshift:GetClusterCredentials); ${secretArn ? 'both were' : 'neither was'} given.`,
    );
  }
  return {
    Database,
    ClusterIdentifier: nonEmpty(target.clusterIdentifier, 'clusterIdentifier'),
    ...(secretArn ? { SecretArn: secretArn } : { DbUser: dbUser }),
  };
}

function describeTarget(target: TargetParameters): string {
  const where = target.ClusterIdentifier
    ? `cluster ${target.ClusterIdentifier}`
    : `workgroup ${target.WorkgroupName}`;
  return `${where}, database ${target.Database}`;
}

const RUNNING = new Set(['SUBMITTED', 'PICKED', 'STARTED']);
const FAILED = new Set(['FAILED', 'ABORTED']);
/** ListStatements' "Valid Range: Minimum value of 0. Maximum value of 100." */
const LIST_PAGE_SIZE = 100;
/** How much of a failed sub-statement's SQL the error quotes. */
const QUOTED_SQL_CHARACTERS = 200;

/** `<uuid>:3` -> 3 (1-based, as the Data API numbers a batch's statements). */
function subStatementNumber(sub: SubStatementData, fallback: number): number {
  const suffix = /:(\d+)$/.exec(sub.Id ?? '');
  return suffix ? Number(suffix[1]) : fallback;
}

function failureText(response: DescribeStatementResponse): string {
  const own =
    response.Error?.trim() ||
    (response.Status === 'ABORTED'
      ? 'the statement was aborted (cancelled)'
      : 'no error text given');
  const subs = response.SubStatements ?? [];
  const failedIndex = subs.findIndex((sub) => sub.Status === 'FAILED');
  const index =
    failedIndex !== -1 ? failedIndex : subs.findIndex((sub) => sub.Status !== 'FINISHED');
  if (index === -1) return own;
  const sub = subs[index]!;
  const sql = (sub.QueryString ?? '').replace(/\s+/g, ' ').trim();
  const quoted =
    sql.length > QUOTED_SQL_CHARACTERS ? `${sql.slice(0, QUOTED_SQL_CHARACTERS)}...` : sql;
  const error = sub.Error?.trim() || own;
  return `statement ${subStatementNumber(sub, index + 1)} of ${subs.length} (${quoted || 'SQL not shown'}) ${sub.Status === 'ABORTED' ? 'was aborted' : 'failed'}: ${error}`;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** One Data API field as a plain value; binary as PostgreSQL's `\x` hex text. */
function fieldValue(field: Field, column: string): string | number | boolean | null {
  if (field.isNull === true) return null;
  if (field.stringValue !== undefined) return field.stringValue;
  if (field.longValue !== undefined) return field.longValue;
  if (field.doubleValue !== undefined) return field.doubleValue;
  if (field.booleanValue !== undefined) return field.booleanValue;
  if (field.blobValue !== undefined) return `\\x${hex(field.blobValue)}`;
  throw new WarehouseError(
    `Redshift returned a value of an unknown kind for column ${JSON.stringify(column)}: ${JSON.stringify(field.$unknown?.[0] ?? field)}; update @aws-sdk/client-redshift-data.`,
  );
}

export class RedshiftDataWarehouse implements Warehouse {
  private readonly target: TargetParameters;

  constructor(
    private readonly client: RedshiftDataClient,
    target: RedshiftTarget,
  ) {
    this.target = targetParameters(target);
  }

  async submitBatch(statements: readonly string[], name: string): Promise<string> {
    const response = await this.call('BatchExecuteStatement', () =>
      this.client.send(
        new BatchExecuteStatementCommand({
          ...this.target,
          Sqls: [...statements],
          StatementName: name,
          WithEvent: false,
        }),
      ),
    );
    return this.statementId(response.Id, 'BatchExecuteStatement');
  }

  /**
   * BatchExecuteStatement with `ExecutionMode: AUTO_COMMIT` ("each SQL statement is committed
   * individually", https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_BatchExecuteStatement.html)
   * on a session: `SessionKeepAliveSeconds` opens one ("the number of seconds to keep the
   * session alive after the query finishes", at most 24 h, after which "the session is forced
   * closed and the query is terminated") and the response names it; `SessionId` runs on it,
   * one call at a time.
   * Without a Data API transaction around the call, an explicit `BEGIN` stays open on the
   * session's connection until a later call's `COMMIT`.
   */
  async submitInSession(
    statements: readonly string[],
    name: string,
    session: WarehouseSession,
  ): Promise<{ statementId: string; sessionId: string }> {
    const response = await this.call('BatchExecuteStatement', () =>
      this.client.send(
        new BatchExecuteStatementCommand({
          ...('sessionId' in session
            ? { SessionId: session.sessionId }
            : { ...this.target, SessionKeepAliveSeconds: session.keepAliveSeconds }),
          Sqls: [...statements],
          StatementName: name,
          WithEvent: false,
          ExecutionMode: 'AUTO_COMMIT',
        }),
      ),
    );
    const sessionId = 'sessionId' in session ? session.sessionId : response.SessionId;
    if (!sessionId) {
      throw new WarehouseError(
        `BatchExecuteStatement on ${describeTarget(this.target)} opened no session (no SessionId in its response); the Data API of this region may not support sessions.`,
      );
    }
    return { statementId: this.statementId(response.Id, 'BatchExecuteStatement'), sessionId };
  }

  async submitStatement(
    sql: string,
    parameters: Readonly<Record<string, string>>,
    name: string,
  ): Promise<string> {
    const entries = Object.entries(parameters);
    const empty = entries.find(([, value]) => value === '');
    if (empty) {
      throw new ConfigError(
        `SQL parameter :${empty[0]} is empty, and the Redshift Data API refuses empty parameter values; write the empty string into the SQL or pass NULL another way.`,
      );
    }
    const response = await this.call('ExecuteStatement', () =>
      this.client.send(
        new ExecuteStatementCommand({
          ...this.target,
          Sql: sql,
          StatementName: name,
          WithEvent: false,
          ...(entries.length > 0
            ? { Parameters: entries.map(([key, value]) => ({ name: key, value })) }
            : {}),
        }),
      ),
    );
    return this.statementId(response.Id, 'ExecuteStatement');
  }

  async describe(statementId: string): Promise<StatementState> {
    const response = await this.call('DescribeStatement', () =>
      this.client.send(new DescribeStatementCommand({ Id: statementId })),
    );
    const status = response.Status ?? 'unknown';
    if (RUNNING.has(status)) return { state: 'running', status };
    // In AUTO_COMMIT mode one statement may fail while the call as a whole finishes.
    const subFailed = (response.SubStatements ?? []).some((sub) => FAILED.has(sub.Status ?? ''));
    if (status === 'FINISHED' && subFailed) {
      return { state: 'failed', status, error: failureText(response) };
    }
    if (status === 'FINISHED') return { state: 'done', status };
    if (FAILED.has(status)) return { state: 'failed', status, error: failureText(response) };
    throw new WarehouseError(
      `DescribeStatement gave status ${JSON.stringify(status)} for statement ${statementId} on ${describeTarget(this.target)}; expected SUBMITTED, PICKED, STARTED, FINISHED, FAILED or ABORTED.`,
    );
  }

  /**
   * CancelStatement: "Cancels a running query. To be canceled, a query must be running." It
   * answers `Status` ("whether the cancel statement succeeded (true)") or one of the errors
   * https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_CancelStatement.html
   * lists (ValidationException, ResourceNotFoundException, QueryTimeoutException,
   * DatabaseConnectionException, InternalServerException); which of them a statement that
   * already ended gives is not documented. So a cancel that was refused or answered false is
   * followed by DescribeStatement: a statement no longer running had nothing left to stop
   * (false); one still running is a WarehouseError carrying the cancel's answer.
   */
  async cancel(statementId: string): Promise<boolean> {
    let refused: unknown;
    try {
      const response = await this.client.send(new CancelStatementCommand({ Id: statementId }));
      if (response.Status === true) return true;
    } catch (error) {
      refused = error;
    }
    const state = await this.describe(statementId);
    if (state.state !== 'running') return false;
    const reason =
      refused === undefined
        ? 'it answered Status false'
        : refused instanceof Error
          ? `${refused.name}: ${refused.message}`
          : String(refused);
    throw new WarehouseError(
      `Redshift Data API CancelStatement on ${describeTarget(this.target)} did not stop statement ${statementId}, still ${state.status}: ${reason}`,
      refused === undefined ? undefined : { cause: refused },
    );
  }

  /**
   * ListStatements
   * (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ListStatements.html):
   * `StatementName` lists "multiple statements by providing a prefix that matches the beginning
   * of the statement name" ("a case-sensitive match"); `RoleLevel` (default true) returns "all
   * statements run by the caller's IAM role", not only this role session's, so one function
   * finds what another of its role submitted; each item names its `SessionId`. "By default,
   * only finished statements are shown", and `Status` takes one value: `ALL`, so that a
   * statement moving from SUBMITTED to STARTED between two listings is not missed. Pages of at most 100, followed by `NextToken` until it is empty.
   */
  async listStatements(namePrefix: string): Promise<ListedStatement[]> {
    const listed: ListedStatement[] = [];
    let nextToken: string | undefined;
    do {
      const token = nextToken;
      const page = await this.call('ListStatements', () =>
        this.client.send(
          new ListStatementsCommand({
            StatementName: namePrefix,
            Status: 'ALL',
            RoleLevel: true,
            MaxResults: LIST_PAGE_SIZE,
            ...(token ? { NextToken: token } : {}),
          }),
        ),
      );
      for (const statement of page.Statements ?? []) {
        const name = statement.StatementName ?? '';
        // The prefix is the service's filter; checked again so that a name it matched
        // otherwise (not case-sensitively, say) is never cancelled.
        if (!statement.Id || !name.startsWith(namePrefix)) continue;
        const status = statement.Status ?? 'unknown';
        listed.push({
          statementId: statement.Id,
          name,
          state: RUNNING.has(status) ? 'running' : FAILED.has(status) ? 'failed' : 'done',
          status,
          sessionId: statement.SessionId || null,
        });
      }
      nextToken = page.NextToken || undefined;
    } while (nextToken);
    return listed;
  }

  async fetchRows(statementId: string, index?: number): Promise<WarehouseRow[]> {
    // A batch's statements are read as `<id>:<n>`, numbered from 1.
    const id = index === undefined ? statementId : `${statementId}:${index + 1}`;
    const rows: WarehouseRow[] = [];
    let columns: string[] | undefined;
    let nextToken: string | undefined;
    do {
      const token = nextToken;
      const page = await this.call('GetStatementResult', () =>
        this.client.send(
          new GetStatementResultCommand({ Id: id, ...(token ? { NextToken: token } : {}) }),
        ),
      );
      if (!columns && page.ColumnMetadata) {
        columns = page.ColumnMetadata.map(
          (column, position) => column.name ?? column.label ?? `column_${position + 1}`,
        );
      }
      for (const record of page.Records ?? []) {
        const names = columns;
        if (!names || names.length !== record.length) {
          throw new WarehouseError(
            `GetStatementResult for statement ${id} gave a row of ${record.length} values but ${names?.length ?? 0} column names.`,
          );
        }
        rows.push(
          Object.fromEntries(record.map((field, i) => [names[i]!, fieldValue(field, names[i]!)])),
        );
      }
      nextToken = page.NextToken || undefined;
    } while (nextToken);
    return rows;
  }

  private statementId(id: string | undefined, call: string): string {
    if (!id) {
      throw new WarehouseError(
        `${call} on ${describeTarget(this.target)} returned no statement id.`,
      );
    }
    return id;
  }

  private async call<T>(name: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      const reason = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      throw new WarehouseError(
        `Redshift Data API ${name} on ${describeTarget(this.target)} failed: ${reason}`,
        { cause: error },
      );
    }
  }
}
