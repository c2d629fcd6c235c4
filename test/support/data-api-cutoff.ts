/**
 * The RDS Data API's per-call time limit, scaled down, on real PostgreSQL: for tests of code
 * that follows long-running statements past a cut-off.
 */
import type pg from 'pg';
import { PgSqlClient } from '../../lambdas/adapters/pg-sql-client';
import { DataApiTimeoutError } from '../../lambdas/core/load/errors';
import type { QueryOptions, Row, SqlClient, SqlParameters } from '../../lambdas/core/sql-client';
import type { TestDatabase } from './db';

/**
 * A SqlClient with the RDS Data API's time limit, scaled down: every call runs on a pooled
 * connection of its own and fails with DataApiTimeoutError when it has not finished after
 * cutOffMs. A longRunning call's statement then keeps running on its connection
 * (continueAfterTimeout); any other is cancelled.
 */
export class CutOffSqlClient implements SqlClient {
  readonly cutOffs: { readonly sql: string; readonly longRunning: boolean }[] = [];
  private readonly stillRunning = new Set<Promise<void>>();
  private readonly pids = new WeakMap<pg.PoolClient, number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly cutOffMs: number,
  ) {}

  async query<R extends Row = Row>(
    sql: string,
    parameters?: SqlParameters,
    options: QueryOptions = {},
  ): Promise<R[]> {
    const connection = await this.pool.connect();
    if (!this.pids.has(connection)) {
      const { rows } = await connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      this.pids.set(connection, rows[0]!.pid);
    }
    const statement = new PgSqlClient(connection).query<R>(sql, parameters);
    const ended = statement.then(
      () => connection.release(),
      () => connection.release(),
    );
    let timer: NodeJS.Timeout | undefined;
    const cutOff = new Promise<'cut off'>((resolve) => {
      timer = setTimeout(resolve, this.cutOffMs, 'cut off');
    });
    const first = await Promise.race([
      statement.then(
        (rows) => ({ rows }),
        (error: unknown) => ({ error }),
      ),
      cutOff,
    ]);
    clearTimeout(timer);
    if (first !== 'cut off') {
      if ('error' in first) throw first.error;
      return first.rows;
    }
    this.cutOffs.push({ sql, longRunning: options.longRunning === true });
    if (options.longRunning) {
      this.stillRunning.add(ended);
      void ended.then(() => this.stillRunning.delete(ended));
    } else {
      await this.pool.query('SELECT pg_cancel_backend($1)', [this.pids.get(connection)]);
      await ended;
    }
    throw new DataApiTimeoutError(`the call was cut off after ${this.cutOffMs} ms`);
  }

  /** Waits until every statement left running after a cut-off has ended. */
  async settle(): Promise<void> {
    await Promise.all([...this.stillRunning]);
  }
}

/** A session holding a lock on a table in an open transaction, until release(). */
export async function holdLock(db: TestDatabase, table: string, mode: string) {
  const session = await db.connect('lock holder');
  await session.query('BEGIN');
  await session.query(`LOCK TABLE ${table} IN ${mode} MODE`);
  return { release: () => session.query('COMMIT') };
}

/** Polls until the condition holds; fails after 20 s. */
export async function until(
  condition: () => boolean | Promise<boolean>,
  what: string,
): Promise<void> {
  const giveUp = Date.now() + 20_000;
  while (!(await condition())) {
    if (Date.now() > giveUp) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
