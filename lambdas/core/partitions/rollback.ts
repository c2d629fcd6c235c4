/**
 * Rolling one partition back: the newest replaced version of a partition (kept in the retired
 * schema when the swap replaced it) goes back into place with the partition's bounds, through
 * the same swap as a run's changed partition (publish_partitions), so the version it replaces
 * is kept in turn. The swap of a partitioned table reads no rows from its staging table: a
 * rollback's is empty, made only because every swap drops the staging table it names.
 */
import type { QualifiedName } from '../identifiers';
import { quoteQualified } from '../identifiers';
import { ADMIN_SCHEMA, RETIRED_SCHEMA, STAGING_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import { buildStagingIndex, startWaitBudget } from '../swap/long-statements';
import { buildSwapPlan, runScopedName, type SwapPlan } from '../swap/plan';

/** The partitioned table `live` is a partition of; null when it is none. */
export async function parentOf(db: SqlClient, live: QualifiedName): Promise<QualifiedName | null> {
  const [parent] = await db.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhparent
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhrelid = to_regclass(format('%I.%I', :schema::text, :name::text)) AND c.relkind = 'p'`,
    { schema: live.schema, name: live.name },
  );
  return parent ?? null;
}

/**
 * Readies `retiredTable` (in the retired schema) to replace the partition `partition` of
 * `parent`: the partition's bounds as a CHECK (so ATTACH does not scan), its indexes (the
 * parent's may have changed since), and the rollback's empty staging table. Returns the plan.
 */
export async function preparePartitionRollback(
  db: SqlClient,
  partition: QualifiedName,
  parent: QualifiedName,
  retiredTable: string,
  options: { readonly runId: string; readonly lockTimeoutMs?: number },
): Promise<SwapPlan> {
  const retired = { schema: RETIRED_SCHEMA, name: retiredTable };
  const names = {
    partitionSchema: partition.schema,
    partitionName: partition.name,
    retiredSchema: retired.schema,
    retiredName: retired.name,
  };
  await db.query(
    `SELECT ${ADMIN_SCHEMA}.add_bounds_check(
       format('%I.%I', :partitionSchema::text, :partitionName::text)::regclass,
       format('%I.%I', :retiredSchema::text, :retiredName::text)::regclass)`,
    names,
  );
  const builds = await db.query<{ statement: string; indexName: string | null }>(
    `SELECT s.statement, s.index_name AS "indexName"
     FROM ${ADMIN_SCHEMA}.staging_index_builds(
       format('%I.%I', :partitionSchema::text, :partitionName::text)::regclass,
       format('%I.%I', :retiredSchema::text, :retiredName::text)::regclass) s`,
    names,
  );
  const budget = startWaitBudget();
  for (const { statement, indexName } of builds) {
    if (indexName === null) await db.query(statement);
    else await buildStagingIndex(db, retired, { statement, indexName }, budget);
  }
  const staging = { schema: STAGING_SCHEMA, name: runScopedName(options.runId, partition) };
  await db.query(`DROP TABLE IF EXISTS ${quoteQualified(staging)}`);
  await db.query(`CREATE TABLE ${quoteQualified(staging)} (LIKE ${quoteQualified(parent)})`);
  return buildSwapPlan(
    [
      {
        live: parent,
        staging,
        strategy: 'rename',
        partitions: [{ partition, replacement: retired }],
      },
    ],
    options,
  );
}
