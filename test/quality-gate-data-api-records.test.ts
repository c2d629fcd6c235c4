/**
 * The staging figures read back over a transport that, like the RDS Data API, returns records
 * only for SELECT statements: formatRecordsAs "only applies to SELECT statements and is
 * ignored for other types of statements" (API reference, ExecuteStatement). Real PostgreSQL,
 * as the pipeline's own non-superuser login.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { stagingFigures } from '../lambdas/core/load/quality-gate';
import { ADMIN_SCHEMA, STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { installSchema } from '../lambdas/core/schema/install';
import type { Row, SqlClient, SqlParameters } from '../lambdas/core/sql-client';
import type { TableTransfer } from '../lambdas/core/transfer/types';
import { freshDatabase } from './support/db';

/** Rows only for statements whose first word (after comments) is SELECT, as the Data API gives. */
class SelectRecordsOnlyClient implements SqlClient {
  readonly statements: string[] = [];
  constructor(private readonly inner: SqlClient) {}

  async query<R extends Row = Row>(sql: string, parameters?: SqlParameters): Promise<R[]> {
    this.statements.push(sql);
    const rows = await this.inner.query<R>(sql, parameters);
    const firstWord = sql
      .replace(/\/\*[\s\S]*?\*\//g, ' ')
      .trim()
      .split(/\s+/)[0]!
      .toUpperCase();
    return firstWord === 'SELECT' ? rows : [];
  }
}

describe('stagingFigures over a transport returning records for SELECT only', () => {
  let pool: pg.Pool;
  let client: SelectRecordsOnlyClient;
  const staging = { schema: STAGING_SCHEMA, name: 'readings__run1' };
  const transfer: TableTransfer = {
    table: {
      source: { schema: 'source', name: 'readings' },
      target: { schema: 'public', name: 'readings' },
      strategy: 'rename',
      allowEmpty: false,
    },
    staging,
    columns: [{ name: 'id', selectExpression: '"id"', targetType: 'integer', figures: 'integer' }],
    s3Prefix: 's3://bucket/runs/run1/readings/',
  };

  beforeAll(async () => {
    const db = await freshDatabase();
    pool = new pg.Pool({ connectionString: db.pipelineUrl, max: 2 });
    const pipeline = new PgSqlClient(pool);
    await installSchema(pipeline);
    await pipeline.query(`CREATE TABLE ${STAGING_SCHEMA}.readings__run1 (id integer)`);
    await pipeline.query(
      `INSERT INTO ${STAGING_SCHEMA}.readings__run1 SELECT generate_series(1, 5)`,
    );
    client = new SelectRecordsOnlyClient(pipeline);
  });

  afterAll(async () => {
    await pool?.end();
  });

  it('reads the stored figures and removes them, leaving no row behind', async () => {
    const figures = await stagingFigures(client, transfer);
    expect(figures.rows).toBe(5);
    expect(figures.columns[0]).toEqual({
      column: 'id',
      kind: 'integer',
      nulls: 0,
      min: '1',
      max: '5',
    });
    const left = await new PgSqlClient(pool).query(
      `SELECT count(*)::int AS n FROM ${ADMIN_SCHEMA}.staging_figures`,
    );
    expect(left).toEqual([{ n: 0 }]);
  });
});
