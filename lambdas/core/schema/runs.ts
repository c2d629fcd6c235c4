/**
 * The control table `redshift_sync.runs`: one row per table per run, written when a run ends
 * (see lambdas/pipeline/run-records.ts), so people can ask Aurora itself when a table was last
 * refreshed, from which snapshot, how long the swap waited and for whom.
 */
import { ADMIN_SCHEMA, describeTable } from './admin';

export const RUN_RECORDS_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.runs (
    run_id text NOT NULL,
    target_schema name NOT NULL,
    target_table name NOT NULL,
    environment text NOT NULL,
    strategy text NOT NULL,
    status text NOT NULL CHECK (status IN ('swapped', 'failed', 'not swapped')),
    rows bigint,
    unload_submitted_at timestamptz,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    waited_seconds numeric,
    blockers jsonb NOT NULL DEFAULT '[]',
    error text,
    mode text,
    full_refresh_reason text,
    watermark_before text,
    watermark_after text,
    rows_inserted bigint,
    rows_updated bigint,
    rows_deleted bigint,
    PRIMARY KEY (run_id, target_schema, target_table)
  )`,
  describeTable(
    'runs',
    'One row per table per run of the Redshift-to-Aurora sync: when, from which unload, how many rows, who made the swap wait; for incremental tables the mode (full or incremental, and why full), the watermark before and after, and the rows inserted, updated and deleted.',
  ),
];

/**
 * The run lease `redshift_sync.run_lease`: at most one row per environment, naming the run that
 * holds it. Runs of one environment never overlap because "Prepare the run" takes it with
 * one atomic statement and finish-run or fail-run give it back (lambdas/pipeline/run-lease.ts).
 */
export const RUN_LEASE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS ${ADMIN_SCHEMA}.run_lease (
    environment text PRIMARY KEY,
    run_id text NOT NULL,
    execution_arn text NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT clock_timestamp()
  )`,
  describeTable(
    'run_lease',
    'The run of the Redshift-to-Aurora sync in progress, per environment. A row left by a run that was stopped is taken over by the next run once Step Functions reports that execution ended; delete it by hand only if that execution no longer exists.',
  ),
];
