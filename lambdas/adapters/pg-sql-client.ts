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
  toPositionalParameters,
} from '../core/sql-client';

export class PgSqlClient implements SqlClient {
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
