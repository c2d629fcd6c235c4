/**
 * A partitioned live table's layout as the catalog describes it (its partitions, their bounds,
 * a DEFAULT partition, detaches left pending), and the names the pipeline gives the tables
 * that replace changed partitions. See docs/design.md, "Partitioned tables".
 */
import { createHash } from 'node:crypto';
import type { QualifiedName } from '../identifiers';
import { ADMIN_SCHEMA, STAGING_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';

export interface LivePartition {
  readonly partition: QualifiedName;
  /** As pg_get_expr(relpartbound) prints it: `FOR VALUES FROM (...) TO (...)`, `DEFAULT`, ... */
  readonly bound: string;
  readonly isDefault: boolean;
  /** A DETACH ... CONCURRENTLY that did not finish (its session died or was cancelled). */
  readonly detachPending: boolean;
  /** The partition is itself partitioned. */
  readonly subPartitioned: boolean;
}

export interface PartitionLayout {
  /** pg_get_partkeydef: `RANGE (day)`, `LIST (region)`, ... */
  readonly key: string;
  readonly partitions: readonly LivePartition[];
}

/** The layout of `live`, or null when it is not a partitioned table (or does not exist). */
export async function readPartitionLayout(
  db: SqlClient,
  live: QualifiedName,
): Promise<PartitionLayout | null> {
  const parameters = { schema: live.schema, name: live.name };
  const [parent] = await db.query<{ key: string | null }>(
    `SELECT pg_get_partkeydef(c.oid) AS key FROM pg_class c
     WHERE c.oid = to_regclass(format('%I.%I', :schema::text, :name::text)) AND c.relkind = 'p'`,
    parameters,
  );
  if (!parent?.key) return null;
  const rows = await db.query<{
    schema: string;
    name: string;
    bound: string;
    isDefault: boolean;
    detachPending: boolean;
    subPartitioned: boolean;
  }>(
    `SELECT partition_schema AS schema, partition_name AS name, bound, is_default AS "isDefault",
            detach_pending AS "detachPending", sub_partitioned AS "subPartitioned"
     FROM ${ADMIN_SCHEMA}.partitions(format('%I.%I', :schema::text, :name::text)::regclass)`,
    parameters,
  );
  return {
    key: parent.key,
    partitions: rows.map((row) => ({
      partition: { schema: row.schema, name: row.name },
      bound: row.bound,
      isDefault: row.isDefault,
      detachPending: row.detachPending,
      subPartitioned: row.subPartitioned,
    })),
  };
}

/**
 * The table in the staging schema that replaces `partition` for the run whose staging table is
 * `staging`: readable (the partition's name, cut short) and unique per run, table and partition
 * (a hash of the three), within PostgreSQL's 63-byte limit. Found again by name when the swap
 * is planned, in a later step.
 */
export function replacementName(staging: QualifiedName, partition: QualifiedName): QualifiedName {
  const readable = partition.name
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 30);
  const hash = createHash('sha256')
    .update(JSON.stringify([staging.schema, staging.name, partition.schema, partition.name]))
    .digest('hex')
    .slice(0, 12);
  return { schema: STAGING_SCHEMA, name: `${readable}__p${hash}` };
}
