import type pg from 'pg';
import { PgSqlClient } from '../../lambdas/adapters/pg-sql-client';
import {
  type QualifiedName,
  quoteIdentifier,
  quoteQualified,
} from '../../lambdas/core/identifiers';
import { STAGING_SCHEMA } from '../../lambdas/core/schema/admin';
import { installSchema } from '../../lambdas/core/schema/install';
import { pipelineRoleStatements } from '../../local/pipeline-role';
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
 * A session of the pipeline as on Aurora: a LOGIN role of its own that is not a superuser
 * (session_user and current_user are both it), with exactly the grants
 * `local/pipeline-role.ts` gives, plus membership in `actsAs` (the roles owning what it swaps,
 * as a user would grant). Returns its SqlClient with the pipeline's schema installed.
 */
export async function pipelineSession(
  db: TestDatabase,
  pipelineRole: string,
  actsAs: readonly string[],
): Promise<{ client: pg.Client; sql: PgSqlClient; login: { user: string; password: string } }> {
  const login = { user: pipelineRole, password: `${pipelineRole} secret` };
  const admin = await db.connect('fixture-admin');
  try {
    for (const statement of pipelineRoleStatements({
      role: login.user,
      password: login.password,
      database: db.name,
    })) {
      await admin.query(statement);
    }
    for (const role of actsAs) {
      await admin.query(`GRANT ${quoteIdentifier(role)} TO ${quoteIdentifier(pipelineRole)}`);
    }
  } finally {
    await admin.end();
  }
  const client = await db.connect('redshift-aurora-sync', login);
  const sql = new PgSqlClient(client);
  await installSchema(sql);
  return { client, sql, login };
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
