import { describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { DatabaseError } from '../lambdas/core/errors';
import { toPositionalParameters } from '../lambdas/core/sql-client';
import { freshDatabase } from './support/db';

describe('toPositionalParameters', () => {
  it('numbers named parameters in order of first use and leaves casts alone', () => {
    expect(toPositionalParameters('SELECT :a::int + :b, :a', { a: 1, b: 2 })).toEqual({
      text: 'SELECT $1::int + $2, $1',
      values: [1, 2],
    });
  });

  it('ignores look-alikes inside literals, quoted names, dollar quotes and comments', () => {
    const sql = `SELECT ':x', E'\\':y', ":z", $body$ :w; $body$, :v -- :u;\n/* :t; */`;
    expect(toPositionalParameters(sql, { v: 'value' }).text).toBe(
      `SELECT ':x', E'\\':y', ":z", $body$ :w; $body$, $1 -- :u;\n/* :t; */`,
    );
  });

  it('refuses more than one statement, as the RDS Data API does', () => {
    expect(() => toPositionalParameters('SELECT 1; SELECT 2')).toThrowError(
      /more than one statement/,
    );
    expect(toPositionalParameters('SELECT 1;').text).toBe('SELECT 1;');
  });

  it('refuses missing and unused parameters', () => {
    expect(() => toPositionalParameters('SELECT :a')).toThrowError(/:a has no value/);
    expect(() => toPositionalParameters('SELECT 1', { a: 1 })).toThrowError(/not used: :a/);
  });
});

describe('PgSqlClient', () => {
  it('runs a statement with named parameters against PostgreSQL', async () => {
    const db = await freshDatabase();
    const client = new PgSqlClient(await db.connect());
    const rows = await client.query<{ greeting: string; n: number }>(
      "SELECT :greeting || ' ' || :name AS greeting, :n::int + 1 AS n",
      { greeting: 'hello', name: "o'brien", n: 41 },
    );
    expect(rows).toEqual([{ greeting: "hello o'brien", n: 42 }]);
  });

  it('runs a long-running statement to its end: a direct connection has no per-call limit to lift', async () => {
    const db = await freshDatabase();
    const client = new PgSqlClient(await db.connect());
    const rows = await client.query<{ n: number }>(
      'SELECT :n::int AS n FROM pg_sleep(0.3)',
      { n: 7 },
      { longRunning: true },
    );
    expect(rows).toEqual([{ n: 7 }]);
  });

  it('reports database errors with their SQLSTATE', async () => {
    const db = await freshDatabase();
    const client = new PgSqlClient(await db.connect());
    const error = await client.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ name: 'DatabaseError', sqlState: '42P01' });
  });
});
