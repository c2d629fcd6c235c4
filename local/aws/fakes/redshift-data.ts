/**
 * The Redshift Data API over a local PostgreSQL standing in for Redshift, with the UNLOAD
 * emulator (local/emulators/unload.ts) writing through the S3 fake as the statement's IAM_ROLE.
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
import { randomUUID } from 'node:crypto';
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
  RedshiftDataServiceException,
  ResourceNotFoundException,
  ValidationException,
} from '@aws-sdk/client-redshift-data';
import pg from 'pg';
import type { LambdaEnvironment } from '../../../lambdas/handlers/environment';
import { RedshiftShimInstaller } from '../../emulators/redshift-shims';
import { bindNamedParameters, pointAtShims, significantTokens } from '../../emulators/redshift-sql';
import { DATA_API_VALUE_TYPES, REDSHIFT_SESSION_SETUP } from '../../emulators/session-setup';
import { isUnload, parseUnload, runUnload } from '../../emulators/unload';
import { type Authorize, type AwsPrincipal, userIdOf } from '../access';
import { AWS_LIMITS } from '../limits';
import type { S3Fake } from './s3';
import { authorizeOrThrow, namedSdkError, sdkError } from './sdk-errors';

export interface RedshiftDataFakeOptions {
  /** The PostgreSQL database standing in for Redshift. */
  readonly sourceUrl: string;
  readonly s3: S3Fake;
  readonly authorize: Authorize;
  readonly region: string;
  readonly account: string;
  /** The cluster or workgroup, and how callers sign in: a secret, or DbUser (cluster only). */
  readonly target: LambdaEnvironment['redshift'];
  /** The cluster's default IAM role, for `IAM_ROLE default`. */
  readonly defaultIamRole?: string;
  /** Slices of the emulated cluster (UNLOAD writes a file per slice). Default 2. */
  readonly slices?: number;
}

type Status = 'SUBMITTED' | 'PICKED' | 'STARTED' | 'FINISHED' | 'FAILED' | 'ABORTED';

interface SubStatement {
  readonly sql: string;
  status: Status;
  error?: string;
  rows?: Record<string, unknown>[];
  columns?: { name: string; typeName: string }[];
}

interface Session {
  readonly id: string;
  readonly owner: string;
  /** `aws:userid` of the caller that opened it: redshift-data:session-owner-iam-userid. */
  readonly ownerUserId: string;
  readonly client: pg.Client;
  readonly openedAt: number;
  readonly keepAliveSeconds: number;
  busy: boolean;
  closeTimer?: NodeJS.Timeout;
  closed: boolean;
}

interface Statement {
  readonly id: string;
  readonly owner: string;
  readonly batch: boolean;
  /** The session it runs on; none: a connection of its own, for this statement only. */
  readonly session?: Session;
  /** AUTO_COMMIT: no transaction around the statements, each commits (or fails) on its own. */
  readonly autoCommit: boolean;
  readonly subs: SubStatement[];
  readonly createdAt: Date;
  updatedAt: Date;
  status: Status;
  error?: string;
  pid?: number;
  cancelled: boolean;
  done: Promise<void>;
}

function validation(message: string): ValidationException {
  return sdkError(ValidationException, message);
}

function notFound(): ResourceNotFoundException {
  return sdkError(ResourceNotFoundException, 'Query does not exist.', 400, { ResourceId: '' });
}

export class RedshiftDataFake {
  private readonly statements = new Map<string, Statement>();
  private readonly sessions = new Map<string, Session>();
  /** Every CancelStatement call: the statement, the caller's role, and what it was answered. */
  readonly cancels: { statementId: string; role: string; answer: string }[] = [];
  private readonly shims = new RedshiftShimInstaller(
    () => new pg.Client({ connectionString: this.options.sourceUrl }),
  );

  constructor(private readonly options: RedshiftDataFakeOptions) {}

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
    const statement = this.submit(principal, [sql], false, parameters, session, false);
    return {
      $metadata: { httpStatusCode: 200 },
      Id: statement.id,
      CreatedAt: statement.createdAt,
      Database: input.Database,
      ...(session ? { SessionId: session.id } : {}),
    };
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
      sqls.map((sql, i) => this.checkSql(sql, `Sqls[${i}]`)),
      true,
      {},
      session,
      input.ExecutionMode === 'AUTO_COMMIT',
    );
    return {
      $metadata: { httpStatusCode: 200 },
      Id: statement.id,
      CreatedAt: statement.createdAt,
      Database: input.Database,
      ...(session ? { SessionId: session.id } : {}),
    };
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
      if (statement.pid) await this.cancelBackend(statement.pid);
    } catch (error) {
      this.cancels.push({ ...call, answer: (error as Error).name });
      throw error;
    }
    this.cancels.push({ ...call, answer: 'cancelled' });
    // The statement ends ABORTED afterwards, as DescribeStatement then shows: the call does
    // not wait for it ("Cancels a running query", API_CancelStatement.html).
    return { $metadata: { httpStatusCode: 200 }, Status: true };
  }

  /** Waits for every statement still running, then closes the sessions. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.statements.values()].map((statement) => statement.done));
    await Promise.allSettled(
      [...this.sessions.values()].map((session) => this.endSession(session)),
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
    const client = new pg.Client({
      connectionString: this.options.sourceUrl,
      application_name: 'redshift-data-api fake session',
    });
    client.on('error', () => {});
    await this.shims.ensure();
    await client.connect();
    await client.query(REDSHIFT_SESSION_SETUP);
    // Redshift's snapshot isolation: a transaction's snapshot is taken at its first query.
    await client.query("SET default_transaction_isolation = 'repeatable read'");
    const session: Session = {
      id: randomUUID(),
      owner: principal.roleArn,
      ownerUserId: userIdOf(principal),
      client,
      openedAt: Date.now(),
      keepAliveSeconds: keepAlive,
      busy: false,
      closed: false,
    };
    this.sessions.set(session.id, session);
    return session;
  }

  /** After a call: the session lives on for its keep-alive, never past 24 h from its start. */
  private keepAlive(session: Session): void {
    session.busy = false;
    clearTimeout(session.closeTimer);
    const hardEndMs =
      session.openedAt + AWS_LIMITS.redshiftData.maxSessionKeepAliveSeconds * 1000 - Date.now();
    const ms = Math.max(0, Math.min(session.keepAliveSeconds * 1000, hardEndMs));
    session.closeTimer = setTimeout(() => void this.endSession(session), ms);
    session.closeTimer.unref();
  }

  private async endSession(session: Session): Promise<void> {
    clearTimeout(session.closeTimer);
    if (session.closed) return;
    session.closed = true;
    await session.client.end().catch(() => {});
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
    sqls: string[],
    batch: boolean,
    parameters: Record<string, string>,
    session: Session | undefined,
    autoCommit: boolean,
  ): Statement {
    const now = new Date();
    if (session) session.busy = true;
    const statement: Statement = {
      id: randomUUID(),
      owner: principal.roleArn,
      batch,
      ...(session ? { session } : {}),
      autoCommit,
      subs: sqls.map((sql) => ({ sql, status: 'SUBMITTED' })),
      createdAt: now,
      updatedAt: now,
      status: 'SUBMITTED',
      cancelled: false,
      done: Promise.resolve(),
    };
    this.statements.set(statement.id, statement);
    statement.done = this.run(statement, parameters);
    return statement;
  }

  private setStatus(statement: Statement, status: Status): void {
    statement.status = status;
    statement.updatedAt = new Date();
  }

  private async run(statement: Statement, parameters: Record<string, string>): Promise<void> {
    const own = statement.session === undefined;
    const session =
      statement.session?.client ??
      new pg.Client({
        connectionString: this.options.sourceUrl,
        application_name: 'redshift-data-api fake',
      });
    if (own) session.on('error', () => {});
    try {
      if (own) {
        await this.shims.ensure();
        await session.connect();
        await session.query(REDSHIFT_SESSION_SETUP);
      }
      statement.pid = (session as unknown as { processID: number }).processID;
      this.setStatus(statement, 'PICKED');
      if (statement.cancelled) throw new Error('cancelled before it started');
      this.setStatus(statement, 'STARTED');
      if (!statement.autoCommit) await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      let failed: { index: number; text: string } | null = null;
      for (const [index, sub] of statement.subs.entries()) {
        if (failed && !statement.autoCommit) {
          sub.status = 'ABORTED';
          continue;
        }
        sub.status = 'STARTED';
        try {
          // A cancel that came between two statements stops the next.
          if (statement.cancelled) throw new Error('canceling statement due to user request');
          await this.runOne(session, sub, parameters);
          sub.status = 'FINISHED';
        } catch (error) {
          const text = `ERROR: ${(error as Error).message}`;
          sub.status = statement.cancelled ? 'ABORTED' : 'FAILED';
          sub.error = text;
          failed ??= { index, text };
          if (statement.cancelled) break;
        }
      }
      if (failed) {
        if (!statement.autoCommit) await session.query('ROLLBACK').catch(() => {});
        statement.error = statement.batch
          ? `Query #${failed.index + 1} failed with ${failed.text}`
          : failed.text;
        this.setStatus(statement, statement.cancelled ? 'ABORTED' : 'FAILED');
        return;
      }
      if (!statement.autoCommit) await session.query('COMMIT');
      this.setStatus(statement, 'FINISHED');
    } catch (error) {
      statement.error = `ERROR: ${(error as Error).message}`;
      this.setStatus(statement, statement.cancelled ? 'ABORTED' : 'FAILED');
    } finally {
      if (own) await session.end().catch(() => {});
      else this.keepAlive(statement.session!);
    }
  }

  private async runOne(
    session: pg.Client,
    sub: SubStatement,
    parameters: Record<string, string>,
  ): Promise<void> {
    if (isUnload(sub.sql)) {
      const unload = parseUnload(sub.sql);
      const role =
        unload.options.iamRole === 'default' ? this.options.defaultIamRole : unload.options.iamRole;
      if (!role)
        throw new Error('IAM_ROLE default names no role: the cluster has no default IAM role.');
      // UNLOAD writes as the role it names, not as the caller.
      await runUnload(
        session,
        unload,
        this.options.s3.unloadBucketFor({ roleArn: role }, unload.options.kmsKeyId ?? undefined),
        {
          slices: this.options.slices ?? 2,
        },
      );
      return;
    }
    const { text, values } = bindNamedParameters(pointAtShims(sub.sql), parameters);
    const result = await session.query({ text, values, types: DATA_API_VALUE_TYPES });
    if (result.fields.length > 0) {
      sub.rows = result.rows;
      const types = await this.typeNames(
        session,
        result.fields.map((f) => f.dataTypeID),
      );
      sub.columns = result.fields.map((f) => ({
        name: f.name,
        typeName: types.get(f.dataTypeID) ?? 'unknown',
      }));
    }
  }

  private async typeNames(session: pg.Client, oids: number[]): Promise<Map<number, string>> {
    const { rows } = await session.query<{ oid: number; name: string }>(
      'SELECT oid::int AS oid, typname AS name FROM pg_catalog.pg_type WHERE oid = ANY($1::oid[])',
      [oids],
    );
    return new Map(rows.map((row) => [row.oid, row.name]));
  }

  private async cancelBackend(pid: number): Promise<void> {
    const canceller = new pg.Client({ connectionString: this.options.sourceUrl });
    canceller.on('error', () => {});
    await canceller.connect();
    try {
      await canceller.query('SELECT pg_cancel_backend($1)', [pid]);
    } finally {
      await canceller.end();
    }
  }
}

function toField(value: unknown): Field {
  if (value === null || value === undefined) return { isNull: true };
  if (typeof value === 'boolean') return { booleanValue: value };
  if (typeof value === 'number')
    return Number.isInteger(value) ? { longValue: value } : { doubleValue: value };
  return { stringValue: String(value) };
}
