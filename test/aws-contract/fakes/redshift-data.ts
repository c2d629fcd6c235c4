/**
 * The Redshift Data API over a local PostgreSQL standing in for Redshift, with the UNLOAD
 * emulator (local/emulators/unload.ts) writing through the S3 fake as the statement's IAM_ROLE
 * (./redshift-data-engine.ts runs them; this file checks requests and who makes them).
 * Statements run in the background and are polled: SUBMITTED, PICKED, STARTED, then FINISHED,
 * FAILED or ABORTED (API_DescribeStatement.html); a batch runs as one transaction and its
 * statements are `<id>:1`, `<id>:2`, ... A statement belongs to the role that submitted it:
 * another role does not find it (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-access.html,
 * "only the IAM role that ran the statement can describe, get results of or cancel it";
 * condition key redshift-data:statement-owner-iam-userid). The error the service gives then is
 * taken to be its "not found" answer for any unknown id (ResourceNotFoundException, "Query does
 * not exist."), not seen in the documentation word for word.
 *
 * Sessions: `SessionKeepAliveSeconds` opens one and the response names it (`SessionId`); a call
 * with `SessionId` runs on that session's connection, one call at a time, and only for the role
 * that opened it (condition key redshift-data:session-owner-iam-userid). The connection stays
 * open `SessionKeepAliveSeconds` after each call, at most 24 h in all. `ExecutionMode:
 * AUTO_COMMIT` runs a batch's statements without a transaction around them ("each SQL statement
 * is committed individually, and a failure of one statement does not affect the others"), so an
 * explicit BEGIN stays open on the session until a later COMMIT. What the service answers for a
 * session that is busy, expired or another role's is not documented word for word: taken to be
 * a ValidationException naming the session.
 */
import {
  type BatchExecuteStatementCommandInput,
  type BatchExecuteStatementCommandOutput,
  type CancelStatementCommandInput,
  type CancelStatementCommandOutput,
  type DescribeStatementCommandInput,
  type DescribeStatementCommandOutput,
  type ExecuteStatementCommandInput,
  type ExecuteStatementCommandOutput,
  type Field,
  type GetStatementResultCommandInput,
  type GetStatementResultCommandOutput,
  type ListStatementsCommandInput,
  type ListStatementsCommandOutput,
  RedshiftDataServiceException,
  ResourceNotFoundException,
  ValidationException,
} from '@aws-sdk/client-redshift-data';
import type { LambdaEnvironment } from '../../../lambdas/handlers/environment';
import { significantTokens } from '../../../local/emulators/redshift-sql';
import { type Authorize, type AwsPrincipal, userIdOf } from '../access';
import { AWS_LIMITS } from '../limits';
import {
  RedshiftEngine,
  type RedshiftEngineOptions,
  type Session,
  type Statement,
} from './redshift-data-engine';
import { authorizeOrThrow, namedSdkError, sdkError } from './sdk-errors';

export interface RedshiftDataFakeOptions extends RedshiftEngineOptions {
  readonly authorize: Authorize;
  readonly region: string;
  readonly account: string;
  /** The cluster or workgroup, and how callers sign in: a secret, or DbUser (cluster only). */
  readonly target: LambdaEnvironment['redshift'];
}

function validation(message: string): ValidationException {
  return sdkError(ValidationException, message);
}

function notFound(): ResourceNotFoundException {
  return sdkError(ResourceNotFoundException, 'Query does not exist.', 400, { ResourceId: '' });
}

/** What ExecuteStatement and BatchExecuteStatement answer: the statement, and its session if any. */
function submitted(
  statement: Statement,
  database: string | undefined,
  session: Session | undefined,
) {
  return {
    $metadata: { httpStatusCode: 200 },
    Id: statement.id,
    CreatedAt: statement.createdAt,
    Database: database,
    ...(session ? { SessionId: session.id } : {}),
  };
}

export class RedshiftDataFake {
  private readonly statements = new Map<string, Statement>();
  private readonly sessions = new Map<string, Session>();
  /** Every CancelStatement call: the statement, the caller's role, and what it was answered. */
  readonly cancels: { statementId: string; role: string; answer: string }[] = [];
  private readonly engine: RedshiftEngine;

  constructor(private readonly options: RedshiftDataFakeOptions) {
    this.engine = new RedshiftEngine(options);
  }

  /** How many calls ran on each session, by session id: what a run asked of the Data API. */
  callsPerSession(): Map<string, number> {
    const calls = new Map<string, number>();
    for (const statement of this.statements.values()) {
      if (statement.session) {
        calls.set(statement.session.id, (calls.get(statement.session.id) ?? 0) + 1);
      }
    }
    return calls;
  }

  /** The ARN IAM evaluates the Data API's statement calls on. */
  get resourceArn(): string {
    const { region, account, target } = this.options;
    return 'workgroupName' in target
      ? `arn:aws:redshift-serverless:${region}:${account}:workgroup/${target.workgroupName}`
      : `arn:aws:redshift:${region}:${account}:cluster:${target.clusterIdentifier}`;
  }

  async executeStatement(
    principal: AwsPrincipal,
    input: ExecuteStatementCommandInput,
  ): Promise<ExecuteStatementCommandOutput> {
    const session = await this.sessionFor(principal, 'redshift-data:ExecuteStatement', input);
    const sql = this.checkSql(input.Sql, 'Sql');
    if (significantTokens(sql).some((token, i, all) => token.text === ';' && i < all.length - 1)) {
      throw validation(
        'Multiple statements in one ExecuteStatement are not supported; use BatchExecuteStatement.',
      );
    }
    const parameters = Object.fromEntries((input.Parameters ?? []).map((p) => [p.name!, p.value!]));
    const statement = this.submit(
      principal,
      input.StatementName,
      [sql],
      false,
      parameters,
      session,
      false,
    );
    return submitted(statement, input.Database, session);
  }

  async batchExecuteStatement(
    principal: AwsPrincipal,
    input: BatchExecuteStatementCommandInput,
  ): Promise<BatchExecuteStatementCommandOutput> {
    const session = await this.sessionFor(principal, 'redshift-data:BatchExecuteStatement', input);
    const sqls = input.Sqls ?? [];
    const { maxBatchStatements } = AWS_LIMITS.redshiftData;
    if (sqls.length < 1 || sqls.length > maxBatchStatements) {
      // The service validates the request against its model: Sqls holds 1 to 40 items.
      throw validation(
        `1 validation error detected: Value at 'sqls' failed to satisfy constraint: Member must have length less than or equal to ${maxBatchStatements} and greater than or equal to 1 (got ${sqls.length})`,
      );
    }
    const statement = this.submit(
      principal,
      input.StatementName,
      sqls.map((sql, i) => this.checkSql(sql, `Sqls[${i}]`)),
      true,
      {},
      session,
      input.ExecutionMode === 'AUTO_COMMIT',
    );
    return submitted(statement, input.Database, session);
  }

  async describeStatement(
    principal: AwsPrincipal,
    input: DescribeStatementCommandInput,
  ): Promise<DescribeStatementCommandOutput> {
    const { statement, sub } = this.find(principal, 'redshift-data:DescribeStatement', input.Id);
    const base = {
      $metadata: { httpStatusCode: 200 },
      CreatedAt: statement.createdAt,
      UpdatedAt: statement.updatedAt,
    };
    if (sub !== undefined) {
      const one = statement.subs[sub]!;
      return {
        ...base,
        Id: input.Id,
        Status: one.status,
        QueryString: one.sql,
        HasResultSet: Boolean(one.rows),
        ...(one.error ? { Error: one.error } : {}),
      };
    }
    return {
      ...base,
      Id: statement.id,
      Status: statement.status,
      ...(statement.error ? { Error: statement.error } : {}),
      ...(statement.pid ? { RedshiftPid: statement.pid } : {}),
      HasResultSet: !statement.batch && Boolean(statement.subs[0]!.rows),
      ...(statement.batch
        ? {
            SubStatements: statement.subs.map((one, i) => ({
              Id: `${statement.id}:${i + 1}`,
              Status: one.status,
              QueryString: one.sql,
              HasResultSet: Boolean(one.rows),
              ...(one.error ? { Error: one.error } : {}),
            })),
          }
        : { QueryString: statement.subs[0]!.sql }),
    } as DescribeStatementCommandOutput;
  }

  async getStatementResult(
    principal: AwsPrincipal,
    input: GetStatementResultCommandInput,
  ): Promise<GetStatementResultCommandOutput> {
    const { statement, sub } = this.find(principal, 'redshift-data:GetStatementResult', input.Id);
    if (statement.batch && sub === undefined) {
      throw validation(
        `Statement ${input.Id} is a batch; get the result of one of its statements as ${input.Id}:<n>.`,
      );
    }
    const one = statement.subs[sub ?? 0]!;
    if (one.status !== 'FINISHED') {
      throw sdkError(
        ResourceNotFoundException,
        `Query does not have result. Please check query status with DescribeStatement. (status ${one.status})`,
        400,
        { ResourceId: input.Id },
      );
    }
    if (!one.rows) {
      throw sdkError(ResourceNotFoundException, 'Query does not have result.', 400, {
        ResourceId: input.Id,
      });
    }
    const start = input.NextToken
      ? Number(Buffer.from(input.NextToken, 'base64url').toString())
      : 0;
    const end = start + AWS_LIMITS.redshiftData.resultPageRows;
    const columns = one.columns ?? [];
    const records: Field[][] = one.rows
      .slice(start, end)
      .map((row) => columns.map((c) => toField(row[c.name])));
    return {
      $metadata: { httpStatusCode: 200 },
      Records: records,
      ColumnMetadata: columns.map((c) => ({ name: c.name, label: c.name, typeName: c.typeName })),
      TotalNumRows: one.rows.length,
      ...(end < one.rows.length
        ? { NextToken: Buffer.from(String(end)).toString('base64url') }
        : {}),
    };
  }

  async cancelStatement(
    principal: AwsPrincipal,
    input: CancelStatementCommandInput,
  ): Promise<CancelStatementCommandOutput> {
    const call = { statementId: input.Id ?? '', role: principal.roleArn };
    try {
      const { statement } = this.find(principal, 'redshift-data:CancelStatement', input.Id);
      if (!['SUBMITTED', 'PICKED', 'STARTED'].includes(statement.status)) {
        throw validation(`Could not cancel a query that is already in ${statement.status} state.`);
      }
      statement.cancelled = true;
      if (statement.pid) await this.engine.cancelBackend(statement.pid);
    } catch (error) {
      this.cancels.push({ ...call, answer: (error as Error).name });
      throw error;
    }
    this.cancels.push({ ...call, answer: 'cancelled' });
    // The statement ends ABORTED afterwards, as DescribeStatement then shows: the call does
    // not wait for it ("Cancels a running query", API_CancelStatement.html).
    return { $metadata: { httpStatusCode: 200 }, Status: true };
  }

  /**
   * ListStatements (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ListStatements.html):
   * `StatementName` is a case-sensitive prefix of the names; `Status` one status or `ALL`, and
   * without it "only finished statements are shown"; `RoleLevel` true (the default) lists "all
   * statements run by the caller's IAM role", false only those "in the current IAM session";
   * `MaxResults` 0 to 100 per page, then `NextToken`; each item names its `SessionId`. The
   * action has no resource type, so it is authorized on "*". Not documented, taken here: the
   * order (newest first), and that MaxResults 0 or none gives pages of 100.
   */
  async listStatements(
    principal: AwsPrincipal,
    input: ListStatementsCommandInput,
  ): Promise<ListStatementsCommandOutput> {
    this.authorize(principal, 'redshift-data:ListStatements', '*');
    const { maxListResults } = AWS_LIMITS.redshiftData;
    const max = input.MaxResults ?? 0;
    if (!Number.isInteger(max) || max < 0 || max > maxListResults) {
      throw validation(
        `1 validation error detected: Value '${max}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to ${maxListResults}`,
      );
    }
    const pageSize = max === 0 ? maxListResults : max;
    const status = input.Status ?? 'FINISHED';
    const roleLevel = input.RoleLevel ?? true;
    const caller = userIdOf(principal);
    const matching = [...this.statements.values()]
      .filter(
        (statement) =>
          statement.owner === principal.roleArn &&
          (roleLevel || statement.ownerUserId === caller) &&
          statement.name.startsWith(input.StatementName ?? '') &&
          (status === 'ALL' || statement.status === status),
      )
      .reverse();
    const start = input.NextToken
      ? Number(Buffer.from(input.NextToken, 'base64url').toString())
      : 0;
    const end = start + pageSize;
    return {
      $metadata: { httpStatusCode: 200 },
      Statements: matching.slice(start, end).map((statement) => ({
        Id: statement.id,
        StatementName: statement.name,
        Status: statement.status,
        CreatedAt: statement.createdAt,
        UpdatedAt: statement.updatedAt,
        IsBatchStatement: statement.batch,
        ...(statement.batch
          ? { QueryStrings: statement.subs.map((sub) => sub.sql) }
          : { QueryString: statement.subs[0]!.sql }),
        ...(statement.session ? { SessionId: statement.session.id } : {}),
      })),
      ...(end < matching.length
        ? { NextToken: Buffer.from(String(end)).toString('base64url') }
        : {}),
    };
  }

  /** Waits for every statement still running, then closes the sessions. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.statements.values()].map((statement) => statement.done));
    await Promise.allSettled(
      [...this.sessions.values()].map((session) => this.engine.endSession(session)),
    );
  }

  /**
   * The session a call runs on: the one its SessionId names (the caller's own, idle and alive),
   * a new one when it asks to keep one alive, or none.
   *
   * A call on a session names no cluster or workgroup. The Service Authorization Reference lists
   * cluster and workgroup as OPTIONAL resource types of ExecuteStatement and
   * BatchExecuteStatement (not `cluster*` as for DescribeTable or ListDatabases), with the
   * condition key redshift-data:session-owner-iam-userid
   * (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftdataapi.html),
   * and the guide's policy for session calls grants them on Resource "*" with that key
   * (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-iam.html). So such a call is
   * authorized here on "*", with the session's owner in the request context: a grant on the
   * cluster's ARN alone does not allow it. Neither page says so in words, nor whether the
   * credentials (secret, GetClusterCredentials, GetCredentials) are checked again for a session
   * already signed in: they are not here, since the session's connection exists.
   */
  private async sessionFor(
    principal: AwsPrincipal,
    action: string,
    input: {
      ClusterIdentifier?: string;
      WorkgroupName?: string;
      SecretArn?: string;
      DbUser?: string;
      Database?: string;
      SessionId?: string;
      SessionKeepAliveSeconds?: number;
    },
  ): Promise<Session | undefined> {
    if (input.SessionId) {
      if (input.ClusterIdentifier || input.WorkgroupName || input.Database) {
        throw validation('A call with SessionId names no cluster, workgroup or database.');
      }
      const session = this.sessions.get(input.SessionId);
      this.authorize(
        principal,
        action,
        '*',
        session ? { 'redshift-data:session-owner-iam-userid': session.ownerUserId } : {},
      );
      if (!session || session.closed || session.owner !== principal.roleArn) {
        throw validation(`Session ${input.SessionId} does not exist or is no longer active.`);
      }
      if (session.busy) {
        throw validation(`Session ${input.SessionId} is running another query.`);
      }
      return session;
    }
    this.authorizeSubmit(principal, action, input);
    const keepAlive = input.SessionKeepAliveSeconds;
    if (keepAlive === undefined) return undefined;
    const { maxSessionKeepAliveSeconds } = AWS_LIMITS.redshiftData;
    if (!Number.isInteger(keepAlive) || keepAlive < 0 || keepAlive > maxSessionKeepAliveSeconds) {
      throw validation(
        `SessionKeepAliveSeconds must be a whole number from 0 to ${maxSessionKeepAliveSeconds}.`,
      );
    }
    const session = await this.engine.openSession(principal, keepAlive);
    this.sessions.set(session.id, session);
    return session;
  }

  private authorizeSubmit(
    principal: AwsPrincipal,
    action: string,
    input: {
      ClusterIdentifier?: string;
      WorkgroupName?: string;
      SecretArn?: string;
      DbUser?: string;
      Database?: string;
    },
  ): void {
    this.authorize(principal, action, this.resourceArn);
    const { target, region, account } = this.options;
    const named =
      'workgroupName' in target
        ? input.WorkgroupName === target.workgroupName
        : input.ClusterIdentifier === target.clusterIdentifier;
    if (!named || input.Database !== target.database) {
      throw validation(
        `No ${'workgroupName' in target ? 'workgroup' : 'cluster'} named ${input.WorkgroupName ?? input.ClusterIdentifier} with database ${input.Database}.`,
      );
    }
    // How the Data API signs in (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-access.html):
    // a secret read with the caller's permission, temporary credentials for DbUser, or the
    // caller's IAM identity (redshift:GetClusterCredentialsWithIAM / redshift-serverless:GetCredentials).
    if (input.SecretArn) {
      if (input.SecretArn !== target.secretArn)
        throw validation(`Secret ${input.SecretArn} is not this cluster's.`);
      this.authorize(principal, 'secretsmanager:GetSecretValue', input.SecretArn);
    } else if (input.DbUser) {
      if (!('clusterIdentifier' in target))
        throw validation('DbUser is not supported for Redshift Serverless.');
      this.authorize(
        principal,
        'redshift:GetClusterCredentials',
        `arn:aws:redshift:${region}:${account}:dbuser:${target.clusterIdentifier}/${input.DbUser}`,
      );
    } else if ('workgroupName' in target) {
      this.authorize(principal, 'redshift-serverless:GetCredentials', this.resourceArn);
    } else {
      this.authorize(
        principal,
        'redshift:GetClusterCredentialsWithIAM',
        `arn:aws:redshift:${region}:${account}:dbname:${target.clusterIdentifier}/${target.database}`,
      );
    }
  }

  private authorize(
    principal: AwsPrincipal,
    action: string,
    resource: string,
    context: Record<string, string> = {},
  ): void {
    authorizeOrThrow(this.options.authorize, principal, { action, resource, context }, (message) =>
      namedSdkError(RedshiftDataServiceException, 'AccessDeniedException', message, 403),
    );
  }

  private checkSql(sql: string | undefined, what: string): string {
    if (!sql || sql.trim() === '') throw validation(`${what} is empty.`);
    if (Buffer.byteLength(sql) > AWS_LIMITS.redshiftData.maxStatementBytes) {
      throw validation(
        `${what} is ${Buffer.byteLength(sql)} bytes; the maximum query statement size is 100 KB.`,
      );
    }
    return sql;
  }

  /** The statement `id` (or `<id>:<n>`) names, when `principal` submitted it. */
  private find(
    principal: AwsPrincipal,
    action: string,
    id: string | undefined,
  ): { statement: Statement; sub?: number } {
    const match = /^(.+?)(?::(\d+))?$/.exec(id ?? '');
    const statement = match ? this.statements.get(match[1]!) : undefined;
    // Describe, GetStatementResult and Cancel name no resource; the owner is a condition key.
    authorizeOrThrow(
      this.options.authorize,
      principal,
      {
        action,
        resource: '*',
        context: statement ? { 'redshift-data:statement-owner-iam-userid': statement.owner } : {},
      },
      (message) =>
        namedSdkError(RedshiftDataServiceException, 'AccessDeniedException', message, 403),
    );
    if (!statement || statement.owner !== principal.roleArn) throw notFound();
    if (match![2] === undefined) return { statement };
    const sub = Number(match![2]) - 1;
    if (!statement.batch || sub < 0 || sub >= statement.subs.length) throw notFound();
    return { statement, sub };
  }

  private submit(
    principal: AwsPrincipal,
    name: string | undefined,
    sqls: string[],
    batch: boolean,
    parameters: Record<string, string>,
    session: Session | undefined,
    autoCommit: boolean,
  ): Statement {
    const statement = this.engine.submit(
      principal,
      name ?? '',
      sqls,
      batch,
      parameters,
      session,
      autoCommit,
    );
    this.statements.set(statement.id, statement);
    return statement;
  }
}

function toField(value: unknown): Field {
  if (value === null || value === undefined) return { isNull: true };
  if (typeof value === 'boolean') return { booleanValue: value };
  if (typeof value === 'number')
    return Number.isInteger(value) ? { longValue: value } : { doubleValue: value };
  return { stringValue: String(value) };
}
