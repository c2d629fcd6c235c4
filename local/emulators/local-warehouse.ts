/**
 * The Warehouse port over a PostgreSQL database standing in for Redshift, as the Redshift
 * Data API would serve it: statements are submitted and run in the background, each batch in
 * ONE REPEATABLE READ transaction on a connection of its own (one snapshot, all or nothing, as
 * BatchExecuteStatement), polled with describe (SUBMITTED, STARTED, FINISHED or FAILED) and
 * their rows fetched afterwards. UNLOAD statements are emulated (unload.ts) into the local
 * bucket folder; everything else runs as written, in a session set up like Redshift's: string
 * literals with backslash escapes (standard_conforming_strings off), UTC, ISO dates, and the
 * shims of functions PostgreSQL lacks (redshift-shims.ts) on the search_path. A failure rolls
 * the whole batch back; files already written stay, as in Redshift.
 *
 * A session (submitInSession) is one connection kept open between calls, as the Data API's
 * sessions: its statements run as written without a transaction around them, so an explicit
 * `BEGIN` (REPEATABLE READ, the sessions' default, for Redshift's snapshot isolation) stays open
 * across calls until a `COMMIT`, and every query in between reads the snapshot its first query
 * took. The first failed statement ends the call (in an open transaction the later ones
 * would fail anyway). An idle session closes after its keep-alive, rolling back what it left
 * open.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { SyncError } from '../../lambdas/core/errors';
import type {
  ListedStatement,
  StatementState,
  Warehouse,
  WarehouseRow,
  WarehouseSession,
} from '../../lambdas/core/transfer/ports';
import { LocalObjectStore } from './local-object-store';
import { RedshiftShimInstaller } from './redshift-shims';
import { bindNamedParameters, pointAtShims, significantTokens } from './redshift-sql';
import { DATA_API_VALUE_TYPES, REDSHIFT_SESSION_SETUP } from './session-setup';
import { runUnload, type UnloadProgress } from './unload';
import { MAX_EXTRA_FLOAT_DIGITS, MIN_EXTRA_FLOAT_DIGITS } from './unload-format';
import { isUnload, parseUnload } from './unload-parse';

/** A call the Data API would refuse (bad id, a result asked for too early, ...). */
export class LocalWarehouseError extends SyncError {}

export interface LocalWarehouseOptions {
  /** Connection URL of the PostgreSQL database standing in for Redshift. */
  readonly sourceUrl: string;
  /** The local bucket folder: `s3://bucket/key` is `<s3Dir>/bucket/key`. */
  readonly s3Dir: string;
  /**
   * The store UNLOAD writes through, when its writes must also reach the target database
   * (see LocalObjectStore); by default a plain one over `s3Dir`.
   */
  readonly bucket?: LocalObjectStore;
  /** Slices of the emulated cluster: UNLOAD writes at least one file per slice. Default 2. */
  readonly slices?: number;
  /** The sessions' application_name (visible in pg_stat_activity). */
  readonly applicationName?: string;
  /** Where a long UNLOAD's progress line goes (rows and MiB written, with rates); none: nowhere. */
  readonly onProgress?: (line: string) => void;
}

/** BatchExecuteStatement takes 1 to 40 statements. */
const MAX_BATCH_STATEMENTS = 40;
/** How much of a failed statement's SQL the error quotes (as the Redshift Data API adapter does). */
const QUOTED_SQL_CHARACTERS = 200;

type Status = 'SUBMITTED' | 'STARTED' | 'FINISHED' | 'FAILED' | 'ABORTED';

interface Session {
  readonly id: string;
  readonly client: pg.Client;
  readonly keepAliveMs: number;
  ready: Promise<void>;
  busy: boolean;
  idle: NodeJS.Timeout | null;
}

interface Submission {
  readonly id: string;
  /** Runs on this session instead of a connection and a transaction of its own. */
  readonly session?: Session;
  readonly name: string;
  readonly statements: readonly string[];
  readonly batch: boolean;
  readonly parameters: Readonly<Record<string, string>>;
  status: Status;
  error: string | null;
  /** The backend running it, once it has a connection (what cancel interrupts). */
  pid: number | null;
  cancelled: boolean;
  /** Per statement: its rows, or null when it returns none (SET, UNLOAD, INSERT, ...). */
  readonly results: (WarehouseRow[] | null)[];
  done: Promise<void>;
}

function errorText(error: unknown): string {
  return `ERROR: ${error instanceof Error ? error.message : String(error)}`;
}

/** The Data API runs one statement per entry; the lexer finds a second one after a `;`. */
function checkSingleStatement(sql: string, where: string): void {
  const tokens = significantTokens(sql);
  const semicolon = tokens.findIndex((token) => token.text === ';');
  if (tokens.length === 0) throw new LocalWarehouseError(`${where} is empty`);
  if (semicolon !== -1 && semicolon < tokens.length - 1) {
    throw new LocalWarehouseError(
      `${where} holds more than one SQL statement; submit them as separate statements of a batch.`,
    );
  }
}

export class LocalWarehouse implements Warehouse {
  private readonly submissions = new Map<string, Submission>();
  private readonly openSessions = new Map<string, Session>();
  private readonly sessions = new Set<pg.Client>();
  private readonly bucket: LocalObjectStore;
  private readonly slices: number;
  private readonly shims = new RedshiftShimInstaller(() => this.connect());
  private closed = false;

  constructor(private readonly options: LocalWarehouseOptions) {
    this.bucket = options.bucket ?? new LocalObjectStore(options.s3Dir);
    this.slices = options.slices ?? 2;
    if (!Number.isInteger(this.slices) || this.slices < 1) {
      throw new LocalWarehouseError(
        `slices is ${options.slices}; the emulated cluster needs a whole number of slices, at least 1.`,
      );
    }
  }

  async submitBatch(statements: readonly string[], name: string): Promise<string> {
    if (statements.length < 1 || statements.length > MAX_BATCH_STATEMENTS) {
      throw new LocalWarehouseError(
        `a batch holds 1 to ${MAX_BATCH_STATEMENTS} statements (BatchExecuteStatement's limit); got ${statements.length}.`,
      );
    }
    statements.forEach((sql, index) => {
      checkSingleStatement(sql, `statement ${index + 1} of batch ${JSON.stringify(name)}`);
    });
    return this.submit({ name, statements: [...statements], batch: true, parameters: {} });
  }

  async submitStatement(
    sql: string,
    parameters: Readonly<Record<string, string>>,
    name: string,
  ): Promise<string> {
    checkSingleStatement(sql, `statement ${JSON.stringify(name)}`);
    return this.submit({ name, statements: [sql], batch: false, parameters: { ...parameters } });
  }

  async submitInSession(
    statements: readonly string[],
    name: string,
    where: WarehouseSession,
  ): Promise<{ statementId: string; sessionId: string }> {
    if (statements.length < 1 || statements.length > MAX_BATCH_STATEMENTS) {
      throw new LocalWarehouseError(
        `a batch holds 1 to ${MAX_BATCH_STATEMENTS} statements (BatchExecuteStatement's limit); got ${statements.length}.`,
      );
    }
    statements.forEach((sql, index) => {
      checkSingleStatement(sql, `statement ${index + 1} of batch ${JSON.stringify(name)}`);
    });
    const session =
      'sessionId' in where ? this.openSession(where.sessionId) : this.newSession(where);
    if (session.busy) {
      throw new LocalWarehouseError(
        `session ${session.id} is still running a statement; submit the next once it is done (a Data API session runs one at a time).`,
      );
    }
    session.busy = true;
    if (session.idle) clearTimeout(session.idle);
    const statementId = this.submit({
      name,
      statements: [...statements],
      batch: true,
      parameters: {},
      session,
    });
    return { statementId, sessionId: session.id };
  }

  async describe(statementId: string): Promise<StatementState> {
    const submission = this.find(statementId);
    switch (submission.status) {
      case 'FINISHED':
        return { state: 'done', status: submission.status };
      case 'FAILED':
      case 'ABORTED':
        return { state: 'failed', status: submission.status, error: submission.error ?? '' };
      default:
        return { state: 'running', status: submission.status };
    }
  }

  /**
   * As CancelStatement: interrupts the statement's backend (pg_cancel_backend, as Redshift's
   * CANCEL ends a running query) and returns at once; the statement then ends ABORTED. On a
   * session, an open transaction is left aborted until a ROLLBACK, as in Redshift ("If the
   * query that you canceled is associated with a transaction, use the ABORT or ROLLBACK
   * command", https://docs.aws.amazon.com/redshift/latest/dg/r_CANCEL.html).
   */
  async cancel(statementId: string): Promise<boolean> {
    const submission = this.find(statementId);
    if (submission.status !== 'SUBMITTED' && submission.status !== 'STARTED') return false;
    submission.cancelled = true;
    // Before it has a backend, it sees `cancelled` when it gets one and never starts.
    if (submission.pid === null) return true;
    const canceller = this.connect();
    await canceller.connect();
    try {
      await canceller.query('SELECT pg_cancel_backend($1)', [submission.pid]);
    } finally {
      await canceller.end();
    }
    return true;
  }

  /** As ListStatements by name prefix (case-sensitive), of every status. */
  async listStatements(namePrefix: string): Promise<ListedStatement[]> {
    const listed: ListedStatement[] = [];
    for (const submission of this.submissions.values()) {
      if (!submission.name.startsWith(namePrefix)) continue;
      listed.push({
        statementId: submission.id,
        name: submission.name,
        state: (await this.describe(submission.id)).state,
        status: submission.status,
        sessionId: submission.session?.id ?? null,
      });
    }
    return listed;
  }

  async fetchRows(statementId: string, index?: number): Promise<WarehouseRow[]> {
    const submission = this.find(statementId);
    if (submission.status !== 'FINISHED') {
      throw new LocalWarehouseError(
        `statement ${statementId} is ${submission.status}; its rows can be fetched once it is FINISHED.`,
      );
    }
    if (submission.batch && index === undefined) {
      throw new LocalWarehouseError(
        `statement ${statementId} is a batch: give the index of the statement whose rows you want.`,
      );
    }
    const position = index ?? 0;
    if (!Number.isInteger(position) || position < 0 || position >= submission.statements.length) {
      throw new LocalWarehouseError(
        `statement ${statementId} has ${submission.statements.length} statement(s); there is none at index ${index}.`,
      );
    }
    const rows = submission.results[position];
    if (!rows) {
      throw new LocalWarehouseError(
        `statement ${position + 1} of ${statementId} returned no result set (it is not a query).`,
      );
    }
    return rows;
  }

  /** Ends the sessions still running (their statements fail) and waits for every submission. */
  async close(): Promise<void> {
    this.closed = true;
    for (const session of this.openSessions.values()) {
      if (session.idle) clearTimeout(session.idle);
      this.sessions.add(session.client);
    }
    await Promise.allSettled([...this.sessions].map((session) => session.end()));
    await Promise.allSettled([...this.submissions.values()].map((submission) => submission.done));
  }

  private find(statementId: string): Submission {
    const submission = this.submissions.get(statementId);
    if (!submission) {
      throw new LocalWarehouseError(`no statement has id ${JSON.stringify(statementId)}.`);
    }
    return submission;
  }

  private newSession(where: { readonly keepAliveSeconds: number }): Session {
    if (this.closed) throw new LocalWarehouseError('the local warehouse is closed.');
    const seconds = where.keepAliveSeconds;
    if (!Number.isInteger(seconds) || seconds < 0 || seconds > 86_400) {
      throw new LocalWarehouseError(
        `SessionKeepAliveSeconds is ${seconds}; give a whole number of seconds up to 86400 (24 h).`,
      );
    }
    const client = this.connect();
    const session: Session = {
      id: randomUUID(),
      client,
      keepAliveMs: seconds * 1000,
      busy: false,
      idle: null,
      ready: Promise.resolve(),
    };
    session.ready = (async () => {
      await this.shims.ensure();
      await client.connect();
      await client.query(
        `${REDSHIFT_SESSION_SETUP}; SET default_transaction_isolation TO 'repeatable read'`,
      );
    })();
    // Failing here is reported by the first statement, which awaits `ready`.
    session.ready.catch(() => {});
    this.openSessions.set(session.id, session);
    return session;
  }

  private openSession(sessionId: string): Session {
    const session = this.openSessions.get(sessionId);
    if (!session) {
      throw new LocalWarehouseError(
        `no open session has id ${JSON.stringify(sessionId)}: it was never opened, or it closed after its keep-alive.`,
      );
    }
    return session;
  }

  /** Closes the session once it has been idle for its keep-alive (its open transaction rolls back). */
  private release(session: Session): void {
    session.busy = false;
    if (this.closed) return;
    session.idle = setTimeout(() => {
      this.openSessions.delete(session.id);
      session.client.end().catch(() => {});
    }, session.keepAliveMs);
    session.idle.unref();
  }

  private submit(
    request: Pick<Submission, 'name' | 'statements' | 'batch' | 'parameters' | 'session'>,
  ): string {
    if (this.closed) throw new LocalWarehouseError('the local warehouse is closed.');
    const submission: Submission = {
      ...request,
      id: randomUUID(),
      status: 'SUBMITTED',
      error: null,
      pid: null,
      cancelled: false,
      results: request.statements.map(() => null),
      done: Promise.resolve(),
    };
    this.submissions.set(submission.id, submission);
    submission.done = this.run(submission);
    return submission.id;
  }

  private connect(): pg.Client {
    const session = new pg.Client({
      connectionString: this.options.sourceUrl,
      application_name: this.options.applicationName ?? 'local-warehouse',
    });
    // A session ended by close() must not crash the process; its statement fails instead.
    session.on('error', () => {});
    return session;
  }

  private async runInSession(submission: Submission, session: Session): Promise<void> {
    try {
      await session.ready;
      this.start(submission, session.client);
      for (const [index, sql] of submission.statements.entries()) {
        try {
          if (submission.cancelled) throw new LocalWarehouseError('the statement was cancelled');
          submission.results[index] = await this.runStatement(session.client, sql, {});
        } catch (error) {
          this.fail(submission, this.failureText(submission, index, error));
          return;
        }
      }
      submission.status = 'FINISHED';
    } catch (error) {
      this.fail(submission, errorText(error));
    } finally {
      this.release(session);
    }
  }

  private async run(submission: Submission): Promise<void> {
    if (submission.session) return this.runInSession(submission, submission.session);
    const session = this.connect();
    this.sessions.add(session);
    try {
      await this.shims.ensure();
      await session.connect();
      await session.query(REDSHIFT_SESSION_SETUP);
      this.start(submission, session);
      await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      for (const [index, sql] of submission.statements.entries()) {
        try {
          if (submission.cancelled) throw new LocalWarehouseError('the statement was cancelled');
          submission.results[index] = await this.runStatement(session, sql, submission.parameters);
        } catch (error) {
          await session.query('ROLLBACK').catch(() => {});
          this.fail(submission, this.failureText(submission, index, error));
          return;
        }
      }
      await session.query('COMMIT');
      submission.status = 'FINISHED';
    } catch (error) {
      this.fail(submission, errorText(error));
    } finally {
      this.sessions.delete(session);
      await session.end().catch(() => {});
    }
  }

  /** Running on `client` from now on, unless it was cancelled while it waited for it. */
  private start(submission: Submission, client: pg.Client): void {
    if (submission.cancelled) throw new LocalWarehouseError('the statement was cancelled');
    submission.pid = (client as unknown as { processID: number }).processID;
    submission.status = 'STARTED';
  }

  /** A cancelled statement ends ABORTED (as the Data API reports it), any other FAILED. */
  private fail(submission: Submission, error: string): void {
    submission.error = error;
    submission.status = submission.cancelled ? 'ABORTED' : 'FAILED';
  }

  private async runStatement(
    session: pg.Client,
    sql: string,
    parameters: Readonly<Record<string, string>>,
  ): Promise<WarehouseRow[] | null> {
    if (isUnload(sql)) {
      if (Object.keys(parameters).length > 0) {
        throw new LocalWarehouseError(
          'UNLOAD takes no parameters; write the values into the query.',
        );
      }
      await runUnload(session, parseUnload(sql), this.bucket, {
        slices: this.slices,
        connect: async () => {
          const slice = this.connect();
          await slice.connect();
          return slice;
        },
        ...(this.options.onProgress
          ? { onProgress: unloadProgressLine(this.options.onProgress) }
          : {}),
      });
      return null;
    }
    refuseOutOfRangeFloatDigits(sql);
    const { text, values } = bindNamedParameters(pointAtShims(sql), parameters);
    const result = await session.query<WarehouseRow>({ text, values, types: DATA_API_VALUE_TYPES });
    return result.fields.length > 0 ? result.rows : null;
  }

  /** Like the Data API adapter's text: which statement of the batch failed, and why. */
  private failureText(submission: Submission, index: number, error: unknown): string {
    if (!submission.batch) return errorText(error);
    const sql = submission.statements[index]!.replace(/\s+/g, ' ').trim();
    const quoted =
      sql.length > QUOTED_SQL_CHARACTERS ? `${sql.slice(0, QUOTED_SQL_CHARACTERS)}...` : sql;
    return `statement ${index + 1} of ${submission.statements.length} (${quoted}) failed: ${errorText(error)}`;
  }
}

/** An UNLOAD's progress as one line: rows and MiB written so far, with their rates. */
function unloadProgressLine(write: (line: string) => void): (progress: UnloadProgress) => void {
  return ({ to, rows, bytes, seconds, done }) => {
    const per = (amount: number) => (seconds > 0 ? amount / seconds : 0);
    const mib = (amount: number) => (amount / 2 ** 20).toFixed(1);
    write(
      `  UNLOAD to ${to}: ${rows.toLocaleString('en-US')} rows, ${mib(bytes)} MiB ${done ? 'written' : 'so far'} in ${seconds.toFixed(1)} s (${Math.round(per(rows)).toLocaleString('en-US')} rows/s, ${mib(per(bytes))} MiB/s)`,
    );
  };
}

/**
 * Redshift takes extra_float_digits from -15 to 2 only (r_extra_float_digits.html);
 * PostgreSQL also takes 3, so the stand-in refuses what Redshift would.
 */
function refuseOutOfRangeFloatDigits(sql: string): void {
  const match =
    /^\s*SET\s+(?:SESSION\s+|LOCAL\s+)?extra_float_digits\s*(?:TO|=)\s*'?(-?\d+)'?\s*;?\s*$/i.exec(
      sql,
    );
  if (!match) return;
  const digits = Number(match[1]);
  if (digits < MIN_EXTRA_FLOAT_DIGITS || digits > MAX_EXTRA_FLOAT_DIGITS) {
    throw new LocalWarehouseError(
      `extra_float_digits ${digits} is outside Redshift's range ${MIN_EXTRA_FLOAT_DIGITS} to ${MAX_EXTRA_FLOAT_DIGITS}.`,
    );
  }
}
