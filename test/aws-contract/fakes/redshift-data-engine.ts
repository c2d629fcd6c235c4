/**
 * The PostgreSQL side of the Redshift Data API fake (./redshift-data.ts): sessions as kept-open
 * connections, and statements run in the background on a session's connection or one of their
 * own, UNLOAD emulated (local/emulators/unload.ts) and written through the S3 fake as the
 * statement's IAM_ROLE. What the API accepts, and who may call it, is the fake's.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { RedshiftShimInstaller } from '../../../local/emulators/redshift-shims';
import { bindNamedParameters, pointAtShims } from '../../../local/emulators/redshift-sql';
import {
  DATA_API_VALUE_TYPES,
  REDSHIFT_SESSION_SETUP,
} from '../../../local/emulators/session-setup';
import { runUnload } from '../../../local/emulators/unload';
import { isUnload, parseUnload } from '../../../local/emulators/unload-parse';
import { type AwsPrincipal, userIdOf } from '../access';
import { AWS_LIMITS } from '../limits';
import type { S3Fake } from './s3';

export interface RedshiftEngineOptions {
  /** The PostgreSQL database standing in for Redshift. */
  readonly sourceUrl: string;
  readonly s3: S3Fake;
  /** The cluster's default IAM role, for `IAM_ROLE default`. */
  readonly defaultIamRole?: string;
  /** Slices of the emulated cluster (UNLOAD writes a file per slice). Default 2. */
  readonly slices?: number;
}

export type Status = 'SUBMITTED' | 'PICKED' | 'STARTED' | 'FINISHED' | 'FAILED' | 'ABORTED';

export interface SubStatement {
  readonly sql: string;
  status: Status;
  error?: string;
  rows?: Record<string, unknown>[];
  columns?: { name: string; typeName: string }[];
}

export interface Session {
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

export interface Statement {
  readonly id: string;
  readonly owner: string;
  /** `aws:userid` of the caller that submitted it: the role session (ListStatements' RoleLevel false). */
  readonly ownerUserId: string;
  /** StatementName as submitted ('' when none was given). */
  readonly name: string;
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

export class RedshiftEngine {
  private readonly shims = new RedshiftShimInstaller(
    () => new pg.Client({ connectionString: this.options.sourceUrl }),
  );

  constructor(private readonly options: RedshiftEngineOptions) {}

  /** A new session of `principal`, its connection set up as Redshift's, kept alive as asked. */
  async openSession(principal: AwsPrincipal, keepAliveSeconds: number): Promise<Session> {
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
    return {
      id: randomUUID(),
      owner: principal.roleArn,
      ownerUserId: userIdOf(principal),
      client,
      openedAt: Date.now(),
      keepAliveSeconds,
      busy: false,
      closed: false,
    };
  }

  /** After a call: the session lives on for its keep-alive, never past 24 h from its start. */
  keepAlive(session: Session): void {
    session.busy = false;
    clearTimeout(session.closeTimer);
    const hardEndMs =
      session.openedAt + AWS_LIMITS.redshiftData.maxSessionKeepAliveSeconds * 1000 - Date.now();
    const ms = Math.max(0, Math.min(session.keepAliveSeconds * 1000, hardEndMs));
    session.closeTimer = setTimeout(() => void this.endSession(session), ms);
    session.closeTimer.unref();
  }

  async endSession(session: Session): Promise<void> {
    clearTimeout(session.closeTimer);
    if (session.closed) return;
    session.closed = true;
    await session.client.end().catch(() => {});
  }

  /** A statement of `principal`, started in the background (`done` settles when it ends). */
  submit(
    principal: AwsPrincipal,
    name: string,
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
      ownerUserId: userIdOf(principal),
      name,
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
    statement.done = this.run(statement, parameters);
    return statement;
  }

  setStatus(statement: Statement, status: Status): void {
    statement.status = status;
    statement.updatedAt = new Date();
  }

  async run(statement: Statement, parameters: Record<string, string>): Promise<void> {
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
          connect: async () => {
            const slice = new pg.Client({ connectionString: this.options.sourceUrl });
            await slice.connect();
            return slice;
          },
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

  async cancelBackend(pid: number): Promise<void> {
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
