/**
 * SqlClient over a direct PostgreSQL connection (node-postgres): tests, the benchmark, and
 * the local run. Holds to the RDS Data API's rules (one statement per call, `:name`
 * parameters) so that what passes here passes there.
 *
 * A call has no time limit of its own (unless the connection sets statement_timeout), so the
 * `longRunning` query option is ignored: the statement simply runs to its end.
 */
import pg from 'pg';
import { DatabaseError } from '../core/errors';
import {
  type QueryOptions,
  type Row,
  type SqlClient,
  type SqlParameters,
  type TransactionalSqlClient,
  toPositionalParameters,
} from '../core/sql-client';

export class PgSqlClient implements TransactionalSqlClient {
  constructor(private readonly connection: pg.ClientBase | pg.Pool) {}

  async query<R extends Row = Row>(
    sql: string,
    parameters?: SqlParameters,
    // No per-call limit here, so a long-running statement needs nothing (see the class comment).
    _options?: QueryOptions,
  ): Promise<R[]> {
    const { text, values } = toPositionalParameters(sql, parameters);
    try {
      const result = await this.connection.query<R>({ text, values });
      return result.rows;
    } catch (error) {
      throw toDatabaseError(error);
    }
  }

  /**
   * Runs `fn` in one transaction on one connection (checked out of the pool for it, when this
   * client holds a pool): committed when `fn` resolves, rolled back when it throws.
   */
  async withTransaction<T>(fn: (db: SqlClient) => Promise<T>): Promise<T> {
    const connection =
      this.connection instanceof pg.Pool ? await this.connection.connect() : this.connection;
    const inTransaction = new PgSqlClient(connection);
    try {
      await connection.query('BEGIN');
      try {
        const result = await fn(inTransaction);
        await connection.query('COMMIT');
        return result;
      } catch (error) {
        await connection.query('ROLLBACK').catch(() => {});
        throw error;
      }
    } finally {
      if (connection !== this.connection) (connection as pg.PoolClient).release();
    }
  }
}

function toDatabaseError(error: unknown): unknown {
  if (error instanceof pg.DatabaseError) {
    return new DatabaseError(error.message, error.code, {
      cause: error,
      ...(error.detail ? { detail: error.detail } : {}),
      ...(error.hint ? { hint: error.hint } : {}),
    });
  }
  return error;
}
