/**
 * Staging tables: where a run's rows land in Aurora before the quality gate and the swap.
 * They live in STAGING_SCHEMA only, so that leftovers of a killed run can be found and
 * dropped without ever touching a user's table.
 */
import { ConfigError } from '../errors';
import {
  displayQualified,
  type QualifiedName,
  quoteIdentifier,
  quoteQualified,
} from '../identifiers';
import { STAGING_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import type { TableTransfer } from '../transfer/types';

/** The first PostgreSQL version whose `CREATE TABLE ... LIKE` knows INCLUDING COMPRESSION. */
const COMPRESSION_SINCE = 140000;

/**
 * Characters a type name can need (`numeric(38,10)`, `timestamp(3) with time zone`,
 * `public.citext`, `"char"`, `text[]`) and nothing that could end the column definition or
 * start a comment, so a type text that the server also accepts as a type can stand in DDL.
 */
const TYPE_TEXT = /^[A-Za-z0-9_ ."$(),[\]]+$/;

export interface StagingColumn {
  readonly name: string;
  readonly targetType: string;
}

/**
 * The CREATE TABLE for a staging table. With a live table: its copy by LIKE, keeping NOT
 * NULL, CHECKs, defaults, generated columns, storage and compression settings and extended
 * statistics, so that what a rename swap publishes enforces what the live table enforced; no
 * indexes (prepareStaging builds them after the load, which is faster than maintaining them
 * during it). Without one (a first run): the transfer's columns with their mapped types,
 * checked against TYPE_TEXT here and by the server (`to_regtype`) before this runs.
 */
export function buildCreateStagingStatement(
  staging: QualifiedName,
  source:
    | { readonly live: QualifiedName; readonly serverVersion: number }
    | { readonly columns: readonly StagingColumn[] },
  options: { readonly unlogged?: boolean } = {},
): string {
  const create = options.unlogged ? 'CREATE UNLOGGED TABLE' : 'CREATE TABLE';
  if ('live' in source) {
    const including = ['DEFAULTS', 'CONSTRAINTS', 'GENERATED', 'STORAGE'];
    if (source.serverVersion >= COMPRESSION_SINCE) including.push('COMPRESSION');
    including.push('STATISTICS');
    return `${create} ${quoteQualified(staging)} (LIKE ${quoteQualified(source.live)} ${including
      .map((option) => `INCLUDING ${option}`)
      .join(' ')})`;
  }
  if (source.columns.length === 0) {
    throw new ConfigError(
      `staging table ${displayQualified(staging)} would have no columns; the source table must have at least one column to sync.`,
    );
  }
  const definitions = source.columns.map((column) => {
    if (!TYPE_TEXT.test(column.targetType)) {
      throw new ConfigError(
        `column ${quoteIdentifier(column.name)}: target type ${JSON.stringify(column.targetType)} is not a type name (letters, digits, spaces, _ . " $ ( ) , [ ] only); fix the type map entry.`,
      );
    }
    return `${quoteIdentifier(column.name)} ${column.targetType}`;
  });
  return `${create} ${quoteQualified(staging)} (${definitions.join(', ')})`;
}

function requireStagingSchema(staging: QualifiedName): void {
  if (staging.schema !== STAGING_SCHEMA) {
    throw new ConfigError(
      `staging table ${displayQualified(staging)} must be in schema ${STAGING_SCHEMA}, where leftovers of killed runs are found and dropped; name it there.`,
    );
  }
}

/**
 * Creates the transfer's staging table, empty, dropping a leftover of the same name first
 * (a retried step). Its shape comes from the live table when there is one, else from the
 * transfer's column types.
 *
 * While a `FOR ALL TABLES` publication exists, staging is created UNLOGGED: that publication
 * would otherwise publish every row loaded into staging, under a table name no subscriber has,
 * and a schema cannot be left out of it; unlogged tables are never published ("If a FOR ALL
 * TABLES publication exists, unlogged tables are ignored for publishing changes",
 * https://www.postgresql.org/message-id/f3f151f7-c4dd-1646-b998-f60bd6217dd3%402ndquadrant.com;
 * `ALTER TABLE ... SET UNLOGGED` refuses a published table: "Unlogged relations cannot be
 * replicated"). prepareStaging makes it logged again when it is to become the live table.
 */
export async function createStagingTable(db: SqlClient, transfer: TableTransfer): Promise<void> {
  requireStagingSchema(transfer.staging);
  const live = transfer.table.target;
  const [facts] = await db.query<{
    stagingSchemaExists: boolean;
    liveExists: boolean;
    serverVersion: number;
    allTablesPublished: boolean;
  }>(
    `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = :stagingSchema) AS "stagingSchemaExists",
            EXISTS (SELECT FROM pg_publication WHERE puballtables) AS "allTablesPublished",
            to_regclass(format('%I.%I', :schema::text, :name::text)) IS NOT NULL AS "liveExists",
            current_setting('server_version_num')::int AS "serverVersion"`,
    { stagingSchema: STAGING_SCHEMA, schema: live.schema, name: live.name },
  );
  if (!facts!.stagingSchemaExists) {
    throw new ConfigError(
      `schema ${STAGING_SCHEMA} does not exist in this database; install the pipeline's schema (installSchema) before loading.`,
    );
  }
  let statement: string;
  if (facts!.liveExists) {
    statement = buildCreateStagingStatement(
      transfer.staging,
      { live, serverVersion: facts!.serverVersion },
      { unlogged: facts!.allTablesPublished },
    );
  } else {
    const columns = transfer.columns.map((column) => ({
      name: column.name,
      targetType: column.targetType,
    }));
    // Checks the texts before the server ever sees them in DDL.
    statement = buildCreateStagingStatement(
      transfer.staging,
      { columns },
      { unlogged: facts!.allTablesPublished },
    );
    const unknown = await db.query<{ type: string }>(
      `SELECT DISTINCT t.type FROM jsonb_array_elements_text(:types::jsonb) AS t(type)
       WHERE to_regtype(t.type) IS NULL ORDER BY 1`,
      { types: JSON.stringify(columns.map((column) => column.targetType)) },
    );
    if (unknown.length > 0) {
      const named = unknown.map(({ type }) => {
        const users = columns.filter((column) => column.targetType === type);
        return `${JSON.stringify(type)} (column ${users.map((column) => quoteIdentifier(column.name)).join(', ')})`;
      });
      throw new ConfigError(
        `${displayQualified(live)} does not exist yet, so its staging table is built from the type map, but this database knows no type ${named.join(', ')}; fix the type map, or create the type (or its extension) first.`,
      );
    }
  }
  await dropStaging(db, transfer.staging);
  await db.query(statement);
}

/** Drops a staging table if it is there. Refuses any table outside STAGING_SCHEMA. */
export async function dropStaging(db: SqlClient, staging: QualifiedName): Promise<void> {
  requireStagingSchema(staging);
  await db.query(`DROP TABLE IF EXISTS ${quoteQualified(staging)}`);
}

/**
 * Drops every table in STAGING_SCHEMA that is not in `keep`: what killed runs left behind.
 * Call it only while no other run is loading (the pipeline runs one at a time), since
 * another run's staging tables look the same. Returns the tables dropped.
 */
export async function dropStaleStaging(
  db: SqlClient,
  keep: readonly QualifiedName[],
): Promise<QualifiedName[]> {
  const kept = new Set(
    keep.filter((table) => table.schema === STAGING_SCHEMA).map((table) => table.name),
  );
  const tables = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = :stagingSchema AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     ORDER BY c.relname`,
    { stagingSchema: STAGING_SCHEMA },
  );
  const dropped: QualifiedName[] = [];
  for (const { name } of tables) {
    if (kept.has(name)) continue;
    const stale = { schema: STAGING_SCHEMA, name };
    await dropStaging(db, stale);
    dropped.push(stale);
  }
  return dropped;
}
