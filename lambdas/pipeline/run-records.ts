/**
 * The control table `redshift_sync.runs`: one row per table per run, written when a run ends,
 * so people can ask Aurora itself when a table was last refreshed, from which snapshot, how
 * long the swap waited and for whom, and for an incremental table, how (full or incremental),
 * from which watermark to which, with how many rows inserted, updated and deleted.
 */
import type { QualifiedName } from '../core/identifiers';
import { ADMIN_SCHEMA } from '../core/schema/admin';
import type { SqlClient } from '../core/sql-client';
import type { BlockerState } from './state';
import type { IncrementOutcome } from './summary';

export interface RunRecord extends IncrementOutcome {
  readonly runId: string;
  readonly target: QualifiedName;
  readonly environment: string;
  readonly strategy: string;
  readonly status: 'swapped' | 'failed' | 'not swapped';
  readonly rows: number | null;
  readonly unloadSubmittedAt: string | null;
  readonly startedAt: string;
  readonly waitedSeconds: number | null;
  readonly blockers: readonly BlockerState[];
  readonly error: string | null;
}

/** Writes (or, when a step is retried, rewrites) one table's row for a run. */
export async function recordRun(db: SqlClient, record: RunRecord): Promise<void> {
  await db.query(
    `INSERT INTO ${ADMIN_SCHEMA}.runs AS r
       (run_id, target_schema, target_table, environment, strategy, status, rows,
        unload_submitted_at, started_at, waited_seconds, blockers, error, mode,
        full_refresh_reason, watermark_before, watermark_after, rows_inserted, rows_updated,
        rows_deleted)
     VALUES (:runId, :schema, :name, :environment, :strategy, :status, :rows::bigint,
             :unloadSubmittedAt::timestamptz, :startedAt::timestamptz, :waitedSeconds::numeric,
             :blockers::jsonb, :error, :mode, :fullRefreshReason, :watermarkBefore,
             :watermarkAfter, :inserted::bigint, :updated::bigint, :deleted::bigint)
     ON CONFLICT (run_id, target_schema, target_table) DO UPDATE
       SET status = EXCLUDED.status, rows = EXCLUDED.rows, finished_at = clock_timestamp(),
           waited_seconds = EXCLUDED.waited_seconds, blockers = EXCLUDED.blockers,
           error = EXCLUDED.error, mode = EXCLUDED.mode,
           full_refresh_reason = EXCLUDED.full_refresh_reason,
           watermark_before = EXCLUDED.watermark_before,
           watermark_after = EXCLUDED.watermark_after, rows_inserted = EXCLUDED.rows_inserted,
           rows_updated = EXCLUDED.rows_updated, rows_deleted = EXCLUDED.rows_deleted`,
    {
      runId: record.runId,
      schema: record.target.schema,
      name: record.target.name,
      environment: record.environment,
      strategy: record.strategy,
      status: record.status,
      rows: record.rows === null ? null : String(record.rows),
      unloadSubmittedAt: record.unloadSubmittedAt,
      startedAt: record.startedAt,
      waitedSeconds: record.waitedSeconds === null ? null : String(record.waitedSeconds),
      blockers: JSON.stringify(record.blockers),
      error: record.error,
      mode: record.mode,
      fullRefreshReason: record.fullRefreshReason,
      watermarkBefore: record.watermarkBefore,
      watermarkAfter: record.watermarkAfter,
      inserted: record.inserted === null ? null : String(record.inserted),
      updated: record.updated === null ? null : String(record.updated),
      deleted: record.deleted === null ? null : String(record.deleted),
    },
  );
}
