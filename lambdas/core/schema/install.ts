/**
 * The pipeline's database objects as one versioned artifact. Every object is defined once, in
 * the modules of this folder, by an idempotent statement (CREATE ... IF NOT EXISTS, CREATE OR
 * REPLACE); `SCHEMA_OBJECTS` lists them in the order they are created. What such statements
 * cannot express (dropping a function whose result type changed, altering a table) is a
 * numbered migration. The version is a hash of both.
 *
 * A run asks the database for the installed version with one query and installs only when it
 * differs: pending migrations, then every object, then a row in `redshift_sync.schema_versions`,
 * all in one transaction, serialized by an advisory lock so that two installers cannot
 * interleave. Anyone can ask the database what is installed:
 * `SELECT * FROM redshift_sync.schema_versions ORDER BY installed_at DESC, id DESC LIMIT 1`.
 *
 * The statements are the same on every cluster, Aurora PostgreSQL Limitless Database included:
 * none of them is DDL Limitless refuses (COMMENT, identity columns; see docs/design.md).
 */
import { createHash } from 'node:crypto';
import { DatabaseError } from '../errors';
import type { SqlClient, TransactionalSqlClient } from '../sql-client';
import { ADMIN_SCHEMA, ADMIN_SCHEMA_SQL, describeTable, idColumn, idSequence } from './admin';
import { DEPENDENTS_FUNCTIONS_SQL } from './dependents';
import { INCREMENT_PROOF_SQL } from './increment-proof';
import { INDEX_FUNCTIONS_SQL } from './indexes';
import { PARTITION_FUNCTIONS_SQL } from './partitions';
import { PRIVILEGE_FUNCTIONS_SQL } from './privileges';
import { PUBLISH_CHECKS_SQL } from './publish-checks';
import { PUBLISH_INCREMENT_SQL } from './publish-increment';
import { PUBLISH_BY_MERGE_SQL } from './publish-merge';
import { PUBLISH_BY_TRUNCATE_SQL } from './publish-truncate';
import { RECONCILE_DELETES_SQL } from './reconcile-deletes';
import { RENAME_SQL } from './rename';
import { RUN_LEASE_SQL, RUN_RECORDS_SQL } from './runs';
import { SWAP_FUNCTION_SQL } from './swap';
import { WATERMARKS_SQL } from './watermarks';

/** Which version is installed, and the last migration applied; one row per installation. */
const SCHEMA_VERSIONS_SQL: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS ${ADMIN_SCHEMA}`,
  idSequence('schema_versions'),
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.schema_versions (
    ${idColumn('schema_versions')},
    version text NOT NULL,
    last_migration integer NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    installed_by name NOT NULL DEFAULT current_user
  )`,
];

/** Every object of the pipeline's schemas, in creation order. */
export const SCHEMA_OBJECTS: readonly string[] = [
  ...SCHEMA_VERSIONS_SQL,
  ...ADMIN_SCHEMA_SQL,
  describeTable(
    'schema_versions',
    "Each installation of the pipeline's objects by redshift-aurora-sync: the version (a hash of their SQL) and the last numbered migration applied. The newest row (by installed_at) is what is installed.",
  ),
  ...DEPENDENTS_FUNCTIONS_SQL,
  ...INDEX_FUNCTIONS_SQL,
  ...PRIVILEGE_FUNCTIONS_SQL,
  ...RENAME_SQL,
  ...PARTITION_FUNCTIONS_SQL,
  PUBLISH_CHECKS_SQL,
  PUBLISH_BY_TRUNCATE_SQL,
  ...PUBLISH_BY_MERGE_SQL,
  RECONCILE_DELETES_SQL,
  PUBLISH_INCREMENT_SQL,
  ...INCREMENT_PROOF_SQL,
  ...WATERMARKS_SQL,
  ...SWAP_FUNCTION_SQL,
  ...RUN_RECORDS_SQL,
  ...RUN_LEASE_SQL,
];

export interface Migration {
  /** Applied in increasing order, each once per database. */
  readonly number: number;
  readonly description: string;
  /**
   * Run before the objects are (re)created. Idempotent (IF EXISTS): a database installed
   * before versioning began has no record of what was applied, so it gets every migration.
   */
  readonly statements: readonly string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    number: 1,
    description:
      'staging_index_statements became staging_index_builds, which also names each index; the result type differs, which CREATE OR REPLACE cannot change',
    statements: [
      `DROP FUNCTION IF EXISTS ${ADMIN_SCHEMA}.staging_index_statements(regclass, regclass)`,
    ],
  },
  {
    number: 2,
    description:
      "incremental sync: runs records each table's mode, watermarks and rows inserted, updated and deleted (the watermarks table itself is created with the objects)",
    statements: [
      `ALTER TABLE IF EXISTS ${ADMIN_SCHEMA}.runs
         ADD COLUMN IF NOT EXISTS mode text,
         ADD COLUMN IF NOT EXISTS full_refresh_reason text,
         ADD COLUMN IF NOT EXISTS watermark_before text,
         ADD COLUMN IF NOT EXISTS watermark_after text,
         ADD COLUMN IF NOT EXISTS rows_inserted bigint,
         ADD COLUMN IF NOT EXISTS rows_updated bigint,
         ADD COLUMN IF NOT EXISTS rows_deleted bigint`,
    ],
  },
  {
    number: 3,
    description:
      'publish_increment takes the key table of deletes "reconcile" as a fifth argument; CREATE OR REPLACE would leave the four-argument one beside it',
    statements: [
      `DROP FUNCTION IF EXISTS ${ADMIN_SCHEMA}.publish_increment(regclass, regclass, text[], text)`,
    ],
  },
  {
    number: 4,
    description:
      'the same DDL on Aurora Limitless, which supports neither identity columns nor COMMENT: the id of schema_versions and retired_versions becomes a plain sequence default continuing after the ids given, and the control tables lose their comments (now in redshift_sync.descriptions)',
    // A function rather than a DO block: CREATE FUNCTION is documented as supported on
    // Limitless. There no control table has an identity column or a comment (they cannot), so
    // it does nothing; elsewhere it changes only the pipeline's own control tables.
    statements: [
      `CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.migration_4() RETURNS void
       LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
       DECLARE
         r record;
         v_next bigint;
         v_sequence text;
       BEGIN
         FOR r IN
           SELECT c.oid::regclass AS tbl, c.relname, a.attname,
                  pg_get_serial_sequence(c.oid::regclass::text, a.attname) AS identity_sequence
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = '${ADMIN_SCHEMA}' AND c.relname IN ('schema_versions', 'retired_versions')
             AND a.attname = 'id' AND a.attidentity <> ''
         LOOP
           -- Past every id given and every value drawn, so ids stay unique and keep growing.
           EXECUTE format('SELECT greatest(coalesce(max(id), 0), coalesce(pg_sequence_last_value(%L), 0)) + 1 FROM %s',
                          r.identity_sequence, r.tbl) INTO v_next;
           EXECUTE format('ALTER TABLE %s ALTER COLUMN id DROP IDENTITY', r.tbl);
           v_sequence := format('%I.%I', '${ADMIN_SCHEMA}', r.relname || '_id_seq');
           EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %s AS bigint', v_sequence);
           PERFORM setval(v_sequence, v_next, false);
           EXECUTE format('ALTER TABLE %s ALTER COLUMN id SET DEFAULT nextval(%L)', r.tbl, v_sequence);
         END LOOP;
         FOR r IN
           SELECT c.oid::regclass AS tbl
           FROM pg_description d
           JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = '${ADMIN_SCHEMA}'
         LOOP
           EXECUTE format('COMMENT ON TABLE %s IS NULL', r.tbl);
         END LOOP;
       END
       $fn$`,
      `SELECT ${ADMIN_SCHEMA}.migration_4()`,
      `DROP FUNCTION ${ADMIN_SCHEMA}.migration_4()`,
    ],
  },
  {
    number: 5,
    description:
      'publish_by_rename takes p_warm_up as a sixth argument (the swap warms it up before it takes its locks); CREATE OR REPLACE would leave the five-argument one beside it, and a call with five arguments would match both',
    statements: [
      `DROP FUNCTION IF EXISTS ${ADMIN_SCHEMA}.publish_by_rename(name, name, regclass, name, text)`,
    ],
  },
  {
    number: 6,
    description:
      'watermarks records the source table each watermark was taken over, so that a change of source makes the next run full (NULL in rows written before: not compared)',
    statements: [
      `ALTER TABLE IF EXISTS ${ADMIN_SCHEMA}.watermarks
         ADD COLUMN IF NOT EXISTS source_schema name,
         ADD COLUMN IF NOT EXISTS source_table name`,
    ],
  },
];

/** What is installed: a hash of every object's and migration's SQL. */
export const SCHEMA_VERSION = schemaVersion(SCHEMA_OBJECTS, MIGRATIONS);

export function schemaVersion(
  objects: readonly string[],
  migrations: readonly Migration[],
): string {
  return createHash('sha256')
    .update(JSON.stringify({ objects, migrations }))
    .digest('hex')
    .slice(0, 16);
}

export interface InstalledVersion {
  readonly version: string;
  readonly lastMigration: number;
}

const INSTALLED_VERSION_SQL = `SELECT version, last_migration AS "lastMigration"
  FROM ${ADMIN_SCHEMA}.schema_versions ORDER BY installed_at DESC, id DESC LIMIT 1`;

/** undefined_table and invalid_schema_name: nothing installed yet. */
const NOT_INSTALLED_SQLSTATES = new Set(['42P01', '3F000']);

/** The installed version, or null when the pipeline's objects were never installed with one. */
export async function installedVersion(db: SqlClient): Promise<InstalledVersion | null> {
  try {
    const [row] = await db.query<{ version: string; lastMigration: number }>(INSTALLED_VERSION_SQL);
    return row ?? null;
  } catch (error) {
    if (error instanceof DatabaseError && NOT_INSTALLED_SQLSTATES.has(error.sqlState ?? '')) {
      return null;
    }
    throw error;
  }
}

export interface SchemaArtifact {
  readonly version: string;
  readonly objects: readonly string[];
  readonly migrations: readonly Migration[];
}

export const CURRENT_SCHEMA: SchemaArtifact = {
  version: SCHEMA_VERSION,
  objects: SCHEMA_OBJECTS,
  migrations: MIGRATIONS,
};

export interface InstallOutcome {
  /** False when the installed version matched: one query, nothing changed. */
  readonly installed: boolean;
  readonly version: string;
  readonly previousVersion: string | null;
  readonly migrationsApplied: readonly number[];
}

/**
 * Installs `artifact` (the current objects by default) unless that version is installed
 * already. Idempotent and safe to run concurrently.
 */
export async function installSchema(
  db: TransactionalSqlClient,
  artifact: SchemaArtifact = CURRENT_SCHEMA,
): Promise<InstallOutcome> {
  const before = await installedVersion(db);
  if (before?.version === artifact.version) {
    return {
      installed: false,
      version: artifact.version,
      previousVersion: before.version,
      migrationsApplied: [],
    };
  }
  return db.withTransaction(async (tx) => {
    // Another installer may be at work: wait for it, then look again under the lock.
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext(:key))`, {
      key: `${ADMIN_SCHEMA} schema install`,
    });
    for (const statement of SCHEMA_VERSIONS_SQL) await tx.query(statement);
    const current = await installedVersion(tx);
    if (current?.version === artifact.version) {
      return {
        installed: false,
        version: artifact.version,
        previousVersion: current.version,
        migrationsApplied: [],
      };
    }
    const pending = artifact.migrations
      .filter((migration) => migration.number > (current?.lastMigration ?? 0))
      .sort((a, b) => a.number - b.number);
    for (const migration of pending) {
      for (const statement of migration.statements) await tx.query(statement);
    }
    for (const statement of artifact.objects) await tx.query(statement);
    const lastMigration = Math.max(
      current?.lastMigration ?? 0,
      ...artifact.migrations.map((migration) => migration.number),
    );
    await tx.query(
      `INSERT INTO ${ADMIN_SCHEMA}.schema_versions (version, last_migration) VALUES (:version, :lastMigration)`,
      { version: artifact.version, lastMigration },
    );
    return {
      installed: true,
      version: artifact.version,
      previousVersion: current?.version ?? null,
      migrationsApplied: pending.map((migration) => migration.number),
    };
  });
}
