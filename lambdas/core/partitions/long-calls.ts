/**
 * The two statements of preparePartitions that read a whole table, made to outlast a
 * transport's per-call limit (45 s over the RDS Data API) as the quality gate's figures query
 * does: sent as long-running, each opening with a marker comment by which pg_stat_activity
 * shows it still running after a cut-off, followed until it ends (within the step's budget),
 * and proven done by what it leaves behind in its own transaction:
 * - the comparison stores its rows, as one JSON array, in the control table staging_figures
 *   (keyed by the staging table; the quality gate has read and deleted its own row by then);
 * - a replacement's fill creates the replacement table in the transaction that fills it, so
 *   the table exists afterwards only if the fill committed (it is dropped before, by its own
 *   call).
 */
import { randomUUID } from 'node:crypto';
import { displayQualified, type QualifiedName, quoteQualified } from '../identifiers';
import { ADMIN_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import {
  CUT_OFF,
  LongStatementStoppedError,
  MARKED_RUNNING_SQL,
  sendLongRunning,
  type WaitBudget,
  waitWhileRunning,
} from '../swap/long-statements';

/** A statement of preparePartitions ended without its result: it failed or was cancelled. */
export class PartitionStatementStoppedError extends LongStatementStoppedError {}

export interface PartitionChangeRow {
  readonly partition_schema: string | null;
  readonly partition_name: string | null;
  readonly staging_rows: number;
  readonly live_rows: number | null;
  readonly changed: boolean | null;
  readonly key_range: string | null;
}

function marker(kind: string, table: QualifiedName): string {
  const readable = `${table.schema}.${table.name}`.replace(/[^A-Za-z0-9_$.]/g, '_');
  return `redshift-aurora-sync ${kind} ${readable} ${randomUUID()}`;
}

async function follow(
  db: SqlClient,
  statement: string,
  parameters: Record<string, string>,
  what: { readonly table: QualifiedName; readonly marker: string; readonly what: string },
  budget: WaitBudget,
): Promise<void> {
  if (!(await sendLongRunning(db, statement, parameters))) return;
  await waitWhileRunning(
    db,
    {
      staging: what.table,
      statement,
      what: what.what,
      waiter: "the staging check's",
      progressHint: 'pg_stat_activity shows it',
      runningSql: MARKED_RUNNING_SQL,
      runningParameters: { marker: what.marker },
    },
    budget,
  );
}

/** partition_changes(live, staging), stored and read back (see the module comment). */
export async function comparePartitions(
  db: SqlClient,
  table: { readonly live: QualifiedName; readonly staging: QualifiedName },
  budget: WaitBudget,
): Promise<PartitionChangeRow[]> {
  const mark = marker('partitions', table.staging);
  const stored = {
    stagingSchema: table.staging.schema,
    stagingTable: table.staging.name,
    marker: mark,
  };
  const statement = `/* ${mark} */ INSERT INTO ${ADMIN_SCHEMA}.staging_figures AS stored
      (staging_schema, staging_table, statement_marker, figures)
    SELECT :stagingSchema::text::name, :stagingTable::text::name, :marker::text,
           coalesce(jsonb_agg(to_jsonb(c)), '[]')
    FROM ${ADMIN_SCHEMA}.partition_changes(
      format('%I.%I', :liveSchema::text, :liveName::text)::regclass,
      format('%I.%I', :stagingSchema::text, :stagingTable::text)::regclass) c
    ON CONFLICT (staging_schema, staging_table) DO UPDATE
    SET statement_marker = EXCLUDED.statement_marker, figures = EXCLUDED.figures,
        computed_at = clock_timestamp()`;
  await follow(
    db,
    statement,
    { ...stored, liveSchema: table.live.schema, liveName: table.live.name },
    { table: table.staging, marker: mark, what: 'the comparison of partitions with staging' },
    budget,
  );
  const where = `WHERE staging_schema = :stagingSchema::text::name
    AND staging_table = :stagingTable::text::name AND statement_marker = :marker::text`;
  // Read, then deleted: a DELETE ... RETURNING may come back without rows over the Data API.
  const [row] = await db.query<{ figures: string }>(
    `SELECT figures::text AS figures FROM ${ADMIN_SCHEMA}.staging_figures ${where}`,
    stored,
  );
  await db.query(`DELETE FROM ${ADMIN_SCHEMA}.staging_figures ${where}`, stored);
  if (!row) {
    throw new PartitionStatementStoppedError(
      `${displayQualified(table.live)}: comparing its partitions with staging stopped before it finished. ${CUT_OFF}, where it has since ended without storing its result: it failed or was cancelled, and the database log says why. Nothing was published; restart the run.`,
      table.staging,
      statement,
    );
  }
  return JSON.parse(row.figures) as PartitionChangeRow[];
}

/** build_partition_replacement, proven by the replacement's existence afterwards. */
export async function fillReplacement(
  db: SqlClient,
  table: { readonly partition: QualifiedName; readonly staging: QualifiedName },
  replacement: QualifiedName,
  budget: WaitBudget,
): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${quoteQualified(replacement)}`);
  const mark = marker('partition fill', replacement);
  const statement = `/* ${mark} */ SELECT ${ADMIN_SCHEMA}.build_partition_replacement(
      format('%I.%I', :partitionSchema::text, :partitionName::text)::regclass,
      format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass,
      :replacementSchema, :replacementName)`;
  await follow(
    db,
    statement,
    {
      partitionSchema: table.partition.schema,
      partitionName: table.partition.name,
      stagingSchema: table.staging.schema,
      stagingName: table.staging.name,
      replacementSchema: replacement.schema,
      replacementName: replacement.name,
    },
    {
      table: replacement,
      marker: mark,
      what: `the fill of ${displayQualified(table.partition)}'s replacement`,
    },
    budget,
  );
  const [built] = await db.query<{ exists: boolean }>(
    `SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) IS NOT NULL AS exists`,
    { schema: replacement.schema, name: replacement.name },
  );
  if (!built?.exists) {
    throw new PartitionStatementStoppedError(
      `${displayQualified(table.partition)}: filling its replacement ${displayQualified(replacement)} from staging stopped before it finished. ${CUT_OFF}, where it has since ended without committing: it failed or was cancelled, and the database log says why. Nothing was published; restart the run.`,
      replacement,
      statement,
    );
  }
}
