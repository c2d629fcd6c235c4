/**
 * Before the swap of a partitioned live table: finish detaches a dead run left pending, find
 * the partitions whose rows staging changes (exactly: see partition_changes in
 * ../schema/partitions.ts), and build a replacement for each changed one, with the partition's
 * indexes and a CHECK of its bounds, so that the swap only detaches, renames and attaches.
 * Equal partitions are left alone: no lock, same storage. Then, when the swap is planned, the
 * replacements are found again by name (plannedPartitions).
 */

import { PreflightError, SyncError } from '../errors';
import { displayQualified, type QualifiedName, quoteQualified } from '../identifiers';
import { ADMIN_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import {
  analyzeStaging,
  buildStagingIndex,
  type LongStatementOptions,
  startWaitBudget,
  type WaitBudget,
} from '../swap/long-statements';
import { newPartitionName, nextStart, regularInterval } from './interval';
import { type PartitionLayout, readPartitionLayout, replacementName } from './layout';
import { DEFAULT_LOCK_RETRY, type LockRetrySettings, withLockRetries } from './lock-retry';
import { comparePartitions, fillReplacement } from './long-calls';

/** Rows of staging that no partition of the live table takes (and it has no DEFAULT). */
export class RowsOutsidePartitionsError extends SyncError {}

export interface PartitionChange {
  readonly partition: QualifiedName;
  readonly stagingRows: number;
  readonly liveRows: number;
  readonly changed: boolean;
}

export interface PreparedPartitions {
  readonly changes: readonly PartitionChange[];
  /** Partitions whose pending detach was finished (DETACH ... FINALIZE). */
  readonly finishedDetaches: readonly string[];
  /** New partitions made for days or months the source has and live had not. */
  readonly created: readonly string[];
}

export interface PreparePartitionsOptions extends LongStatementOptions {
  /**
   * How creating a partition and finishing a pending detach wait for their locks (./lock-retry.ts):
   * the run's `locks` settings. Default DEFAULT_LOCK_RETRY.
   */
  readonly locks?: LockRetrySettings;
}

export async function preparePartitions(
  db: SqlClient,
  table: { readonly live: QualifiedName; readonly staging: QualifiedName },
  found: PartitionLayout,
  options: PreparePartitionsOptions = {},
): Promise<PreparedPartitions> {
  let layout = found;
  // One bound for the step: waiting for locks below and for long statements after.
  const budget = startWaitBudget(options);
  const locks = options.locks ?? DEFAULT_LOCK_RETRY;
  const live = displayQualified(table.live);
  const nested = layout.partitions.filter((partition) => partition.subPartitioned);
  if (nested.length > 0) {
    throw new PreflightError(
      `${live}: partition ${nested.map(({ partition }) => displayQualified(partition)).join(', ')} is itself partitioned, which publishing partition by partition does not do; use strategy "merge" for this table.`,
      [`${live} has sub-partitioned partitions`],
    );
  }
  let finishedDetaches: string[] = [];
  const pending = layout.partitions.filter((partition) => partition.detachPending);
  if (pending.length > 0) {
    const names = pending.map(({ partition }) => displayQualified(partition)).join(', ');
    // FINALIZE takes SHARE UPDATE EXCLUSIVE on the parent and ACCESS EXCLUSIVE on the
    // partition, then waits for the transactions whose snapshots are older than its own.
    finishedDetaches = await withLockRetries(
      db,
      budget,
      locks,
      {
        table: table.live,
        doing: `finish the pending detach of partition ${names} (DETACH PARTITION ... FINALIZE), which a DETACH ... CONCURRENTLY that did not end left half done`,
        locks: `SHARE UPDATE EXCLUSIVE on ${live} and ACCESS EXCLUSIVE on ${names}, then waits for the transactions that began before it`,
        targets: [
          { relation: table.live, mode: 'ShareUpdateExclusiveLock', includeDependentViews: false },
          ...pending.map(({ partition }) => ({
            relation: partition,
            mode: 'AccessExclusiveLock' as const,
            includeDependentViews: false,
          })),
        ],
      },
      async (timeout) =>
        (
          await db.query<{ partition: string }>(
            `SELECT f AS partition FROM ${ADMIN_SCHEMA}.finish_pending_detaches(
               format('%I.%I', :schema::text, :name::text)::regclass, :timeout) f`,
            { schema: table.live.schema, name: table.live.name, timeout },
          )
        ).map((row) => row.partition),
    );
    layout = (await readPartitionLayout(db, table.live)) ?? layout;
  }
  const created = await createMissingPartitions(db, table, layout, budget, locks);
  const rows = await comparePartitions(db, table, budget);
  const outside = rows.find((row) => row.partition_schema === null);
  if (outside && outside.staging_rows > 0) {
    throw new RowsOutsidePartitionsError(
      `${live}: ${outside.staging_rows} rows of the source fall outside every partition (partition key ${layout.key}, values ${outside.key_range}), and the table has no DEFAULT partition; nothing was published. Partitions are created only for a table partitioned by RANGE on one date or timestamp column into whole days or whole months, and for rows whose key is not null. Create the partitions for that range (CREATE TABLE ... PARTITION OF ${live} FOR VALUES ...) or a DEFAULT partition, then run again.`,
    );
  }
  const changes = rows
    .filter((row) => row.partition_schema !== null)
    .map((row) => ({
      partition: { schema: row.partition_schema!, name: row.partition_name! },
      stagingRows: row.staging_rows,
      liveRows: row.live_rows ?? 0,
      changed: row.changed === true,
    }));
  for (const change of changes) {
    const replacement = replacementName(table.staging, change.partition);
    const names = {
      partitionSchema: change.partition.schema,
      partitionName: change.partition.name,
      replacementSchema: replacement.schema,
      replacementName: replacement.name,
    };
    if (!change.changed) {
      // A replacement left by an earlier attempt of this run, when the partition differed then.
      await db.query(`DROP TABLE IF EXISTS ${quoteQualified(replacement)}`);
      continue;
    }
    await fillReplacement(
      db,
      { partition: change.partition, staging: table.staging },
      replacement,
      budget,
    );
    const builds = await db.query<{ statement: string; indexName: string | null }>(
      `SELECT s.statement, s.index_name AS "indexName"
       FROM ${ADMIN_SCHEMA}.staging_index_builds(
         format('%I.%I', :partitionSchema::text, :partitionName::text)::regclass,
         format('%I.%I', :replacementSchema::text, :replacementName::text)::regclass) s`,
      names,
    );
    for (const { statement, indexName } of builds) {
      if (indexName === null) await db.query(statement);
      else await buildStagingIndex(db, replacement, { statement, indexName }, budget);
    }
    await analyzeStaging(db, replacement, budget);
  }
  return { changes, finishedDetaches, created };
}

/**
 * For staging's rows outside every partition of a table partitioned by day or by month
 * (./interval.ts), the missing days or months as new, empty partitions made like the latest
 * one; partition_changes then finds them changed, and the swap fills them. Returns their names.
 */
async function createMissingPartitions(
  db: SqlClient,
  table: { readonly live: QualifiedName; readonly staging: QualifiedName },
  layout: PartitionLayout,
  budget: WaitBudget,
  locks: LockRetrySettings,
): Promise<string[]> {
  const interval = regularInterval(layout.partitions);
  if (!interval) return [];
  const parameters = {
    schema: table.live.schema,
    name: table.live.name,
    stagingSchema: table.staging.schema,
    stagingName: table.staging.name,
  };
  const [column] = await db.query<{ name: string }>(
    `SELECT column_name AS name FROM ${ADMIN_SCHEMA}.partition_range_column(
       format('%I.%I', :schema::text, :name::text)::regclass)`,
    { schema: table.live.schema, name: table.live.name },
  );
  if (!column) return [];
  const buckets = await db.query<{ start: string }>(
    `SELECT b AS start FROM ${ADMIN_SCHEMA}.outside_buckets(
       format('%I.%I', :schema::text, :name::text)::regclass,
       format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass, :unit) b`,
    { ...parameters, unit: interval.unit },
  );
  const created: string[] = [];
  const live = displayQualified(table.live);
  for (const { start } of buckets) {
    const partition = newPartitionName(table.live, interval, start);
    const from = `${start}${interval.suffix}`;
    const to = `${nextStart(start, interval.unit)}${interval.suffix}`;
    const template = displayQualified(interval.template);
    // ATTACH takes SHARE UPDATE EXCLUSIVE on the parent, which no reader or writer conflicts
    // with, and CREATE TABLE ... LIKE takes ACCESS SHARE on the template partition.
    const [row] = await withLockRetries(
      db,
      budget,
      locks,
      {
        table: table.live,
        doing: `attach its new partition ${displayQualified({ schema: table.live.schema, name: partition })} for ${from} to ${to}, which rows of the source fall in`,
        locks: `SHARE UPDATE EXCLUSIVE on ${live} and ACCESS SHARE on ${template}, the partition it is made like`,
        targets: [
          { relation: table.live, mode: 'ShareUpdateExclusiveLock', includeDependentViews: false },
          { relation: interval.template, mode: 'AccessShareLock', includeDependentViews: false },
        ],
      },
      (timeout) =>
        db.query<{ created: string }>(
          `SELECT ${ADMIN_SCHEMA}.create_partition(
             format('%I.%I', :schema::text, :name::text)::regclass,
             format('%I.%I', :templateSchema::text, :templateName::text)::regclass,
             :partition, :from, :to, :timeout) AS created`,
          {
            schema: table.live.schema,
            name: table.live.name,
            templateSchema: interval.template.schema,
            templateName: interval.template.name,
            partition,
            from,
            to,
            timeout,
          },
        ),
    );
    created.push(row!.created);
  }
  return created;
}

/**
 * The changed partitions of a partitioned live table, as the swap is planned: those for which
 * preparePartitions built a replacement (null when `live` is not partitioned).
 */
export async function plannedPartitions(
  db: SqlClient,
  table: { readonly live: QualifiedName; readonly staging: QualifiedName },
): Promise<{ partition: QualifiedName; replacement: QualifiedName }[] | null> {
  const layout = await readPartitionLayout(db, table.live);
  if (!layout) return null;
  const planned = layout.partitions.map(({ partition }) => ({
    partition,
    replacement: replacementName(table.staging, partition),
  }));
  const [found] = await db.query<{ exists: boolean[] }>(
    `SELECT array_agg(to_regclass(format('%I.%I', r ->> 'schema', r ->> 'name')) IS NOT NULL ORDER BY n) AS exists
     FROM jsonb_array_elements(:replacements::jsonb) WITH ORDINALITY AS e(r, n)`,
    { replacements: JSON.stringify(planned.map(({ replacement }) => replacement)) },
  );
  return planned.filter((_, index) => found?.exists?.[index] === true);
}
