/**
 * The pipeline's objects as a versioned artifact, on real PostgreSQL and as the pipeline's own
 * (non-superuser) role: installed once, checked with one query afterwards, upgraded in one
 * transaction over a database that holds data.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import {
  CURRENT_SCHEMA,
  installedVersion,
  installSchema,
  MIGRATIONS,
  SCHEMA_OBJECTS,
  SCHEMA_VERSION,
  type SchemaArtifact,
  schemaVersion,
} from '../lambdas/core/schema/install';
import type { SqlClient, SqlParameters } from '../lambdas/core/sql-client';
import { freshDatabase, type TestDatabase } from './support/db';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase();
});

async function pipelineClient(): Promise<{ sql: PgSqlClient; client: pg.Client }> {
  const client = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  return { sql: new PgSqlClient(client), client };
}

/** Counts the statements that reach the database. */
class CountingClient extends PgSqlClient {
  statements: string[] = [];
  override async query<R extends Record<string, unknown>>(sql: string, parameters?: SqlParameters) {
    this.statements.push(sql);
    return super.query<R>(sql, parameters);
  }
}

describe('installSchema', () => {
  it('installs every object once, then checks the version with one query and changes nothing', async () => {
    const fresh = await freshDatabase();
    const client = await fresh.connect('redshift-aurora-sync', fresh.pipelineLogin);
    const sql = new CountingClient(client);
    const first = await installSchema(sql);
    expect(first).toEqual({
      installed: true,
      version: SCHEMA_VERSION,
      previousVersion: null,
      migrationsApplied: MIGRATIONS.map((migration) => migration.number),
    });
    expect(await installedVersion(sql)).toEqual({
      version: SCHEMA_VERSION,
      lastMigration: Math.max(...MIGRATIONS.map((migration) => migration.number)),
    });

    sql.statements = [];
    const again = await installSchema(sql);
    expect(again.installed).toBe(false);
    expect(sql.statements).toHaveLength(1);
    expect(sql.statements[0]).toContain('schema_versions');
  });

  it('tells what is installed to anyone who asks the database, by a hash of the SQL', async () => {
    const { client } = await pipelineClient();
    await installSchema(new PgSqlClient(client));
    const { rows } = await client.query(
      'SELECT version, installed_by FROM redshift_sync.schema_versions ORDER BY id DESC LIMIT 1',
    );
    expect(rows[0]).toEqual({ version: SCHEMA_VERSION, installed_by: db.pipelineLogin.user });
    expect(schemaVersion(SCHEMA_OBJECTS, MIGRATIONS)).toBe(SCHEMA_VERSION);
    expect(schemaVersion([...SCHEMA_OBJECTS, 'SELECT 1'], MIGRATIONS)).not.toBe(SCHEMA_VERSION);
  });

  it('upgrades version N to N+1 over live data: pending migrations once, objects replaced, data kept', async () => {
    const fresh = await freshDatabase();
    const client = await fresh.connect('redshift-aurora-sync', fresh.pipelineLogin);
    const sql = new PgSqlClient(client);
    await installSchema(sql);
    await client.query(
      `INSERT INTO redshift_sync.runs (run_id, target_schema, target_table, environment, strategy, status, started_at)
       VALUES ('run-1', 'public', 'orders', 'prod', 'rename', 'swapped', now())`,
    );
    const next: SchemaArtifact = {
      objects: [
        ...CURRENT_SCHEMA.objects,
        `CREATE OR REPLACE FUNCTION redshift_sync.newer() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$`,
      ],
      migrations: [
        ...CURRENT_SCHEMA.migrations,
        {
          number: 99,
          description: 'runs get a note',
          statements: ['ALTER TABLE redshift_sync.runs ADD COLUMN note text'],
        },
      ],
      version: 'n-plus-1',
    };
    const upgrade = await installSchema(sql, next);
    expect(upgrade).toEqual({
      installed: true,
      version: 'n-plus-1',
      previousVersion: SCHEMA_VERSION,
      migrationsApplied: [99],
    });
    const { rows } = await client.query(
      'SELECT run_id, note, redshift_sync.newer() AS newer FROM redshift_sync.runs',
    );
    expect(rows).toEqual([{ run_id: 'run-1', note: null, newer: 2 }]);
    // A newer artifact again: migration 99 is not applied twice (it would fail: the column exists).
    const later = await installSchema(sql, { ...next, version: 'n-plus-2' });
    expect(later.migrationsApplied).toEqual([]);
  });

  it('rolls a failed upgrade back whole: the old version stays installed and working', async () => {
    const fresh = await freshDatabase();
    const client = await fresh.connect('redshift-aurora-sync', fresh.pipelineLogin);
    const sql = new PgSqlClient(client);
    await installSchema(sql);
    const broken: SchemaArtifact = {
      objects: [
        `CREATE OR REPLACE FUNCTION redshift_sync.half_done() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$`,
        'CREATE TABLE redshift_sync.broken (x no_such_type)',
      ],
      migrations: CURRENT_SCHEMA.migrations,
      version: 'broken',
    };
    await expect(installSchema(sql, broken)).rejects.toThrow(/no_such_type/);
    expect((await installedVersion(sql))?.version).toBe(SCHEMA_VERSION);
    const { rows } = await client.query(
      `SELECT to_regprocedure('redshift_sync.half_done()') IS NULL AS gone`,
    );
    expect(rows[0]).toEqual({ gone: true });
  });

  it('migrates a database installed before versioning (the old function is dropped)', async () => {
    const fresh = await freshDatabase();
    const client = await fresh.connect('redshift-aurora-sync', fresh.pipelineLogin);
    await client.query('CREATE SCHEMA redshift_sync');
    await client.query(
      `CREATE FUNCTION redshift_sync.staging_index_statements(regclass, regclass) RETURNS SETOF text
       LANGUAGE sql AS $$ SELECT ''::text $$`,
    );
    const outcome = await installSchema(new PgSqlClient(client));
    expect(outcome).toMatchObject({ installed: true, previousVersion: null });
    const { rows } = await client.query(
      `SELECT to_regprocedure('redshift_sync.staging_index_statements(regclass, regclass)') IS NULL AS gone`,
    );
    expect(rows[0]).toEqual({ gone: true });
  });

  it('lets two installers start together: one installs, the other waits and finds it done', async () => {
    const fresh = await freshDatabase();
    const sessions = await Promise.all([
      fresh.connect('redshift-aurora-sync', fresh.pipelineLogin),
      fresh.connect('redshift-aurora-sync', fresh.pipelineLogin),
    ]);
    const outcomes = await Promise.all(
      sessions.map((session) => installSchema(new PgSqlClient(session) as PgSqlClient & SqlClient)),
    );
    expect(outcomes.map((outcome) => outcome.installed).sort()).toEqual([false, true]);
    const { rows } = await sessions[0]!.query(
      'SELECT count(*)::int AS n FROM redshift_sync.schema_versions',
    );
    expect(rows[0]).toEqual({ n: 1 });
  });
});
