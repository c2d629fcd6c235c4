import type pg from 'pg';
import { PgSqlClient } from '../../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteQualified } from '../../lambdas/core/identifiers';
import { STAGING_SCHEMA } from '../../lambdas/core/schema/admin';
import { installSchema } from '../../lambdas/core/swap/engine';
import type { TestDatabase } from './db';

/** Roles are cluster-wide: each test file gets names of its own. */
export function uniqueRoles<const T extends readonly string[]>(
  ...names: T
): { [K in T[number]]: string } {
  const suffix = Math.random().toString(36).slice(2, 7);
  return Object.fromEntries(names.map((name) => [name, `${name}_${suffix}`])) as {
    [K in T[number]]: string;
  };
}

/**
 * A session acting as the pipeline: a non-superuser role, as on Aurora, allowed to act as the
 * roles that own what it swaps. Returns its SqlClient with the schema installed.
 */
export async function pipelineSession(
  db: TestDatabase,
  pipelineRole: string,
  actsAs: readonly string[],
): Promise<{ client: pg.Client; sql: PgSqlClient }> {
  const admin = await db.connect('fixture-admin');
  await admin.query(`CREATE ROLE "${pipelineRole}" NOLOGIN`);
  for (const role of actsAs) await admin.query(`GRANT "${role}" TO "${pipelineRole}"`);
  await admin.query(`GRANT CREATE ON DATABASE "${db.name}" TO "${pipelineRole}"`);
  // As on Aurora: see others' sessions in full, and end them when told to.
  await admin.query(`GRANT pg_read_all_stats, pg_signal_backend TO "${pipelineRole}"`);
  const client = await db.connect('redshift-aurora-sync');
  await client.query(`SET ROLE "${pipelineRole}"`);
  const sql = new PgSqlClient(client);
  await installSchema(sql);
  return { client, sql };
}

/** A staging table with the live table's columns, filled by `fill` (SQL selecting rows). */
export async function createStaging(
  client: pg.Client,
  live: QualifiedName,
  stagingName: string,
  fill: string,
): Promise<QualifiedName> {
  const staging = { schema: STAGING_SCHEMA, name: stagingName };
  await client.query(
    `CREATE TABLE ${quoteQualified(staging)} (LIKE ${quoteQualified(live)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE)`,
  );
  await client.query(`INSERT INTO ${quoteQualified(staging)} ${fill}`);
  return staging;
}

/** Runs `sql` as `role` on a fresh transaction of `client`, and rolls back. */
export async function asRole<T extends pg.QueryResultRow>(
  client: pg.Client,
  role: string,
  sql: string,
): Promise<T[] | { error: string; code: string }> {
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL ROLE "${role}"`);
    return (await client.query<T>(sql)).rows;
  } catch (error) {
    const { message, code } = error as { message: string; code: string };
    return { error: message, code };
  } finally {
    await client.query('ROLLBACK');
  }
}
