/**
 * When the whole-table proof of an increment fails inside the swap (SQLSTATE RS002), the swap
 * rolled back: live is as it was, and so is the watermark. The table is then marked, in its
 * own statement, so that its next run is full and says why; the run fails naming the table and
 * the figures that differ.
 *
 * A swap the Data API cut off (a large increment and its proof outlast a 45 s call) that then
 * ended without committing leaves no error to read: the proof may have failed, and an
 * incremental run would meet the same mismatch again, every run. Every increment of that swap
 * is marked then, so that the next run takes those tables whole, which re-establishes them
 * whatever went wrong.
 */
import { DatabaseError, SyncError } from '../core/errors';
import { displayQualified, quoteQualified } from '../core/identifiers';
import { requireFullRefresh } from '../core/increment/mode';
import { SYNC_SQLSTATE } from '../core/schema/sqlstates';
import type { SqlClient } from '../core/sql-client';
import { SwapCutOffEndedError, type SwapResult } from '../core/swap/engine';
import type { PlannedTable, SwapPlan } from '../core/swap/plan';
import type { PipelineLog } from './deps';
import type { PublishedRows } from './state';

/** An increment did not leave live equal to the whole source table; nothing was published. */
export class IncrementMismatchError extends SyncError {}

export async function applyIncrementMismatch(
  db: SqlClient,
  log: PipelineLog,
  plan: SwapPlan,
  error: unknown,
): Promise<never> {
  const increments = plan.tables.filter((table) => table.increment);
  if (error instanceof SwapCutOffEndedError && increments.length > 0) {
    await markAll(
      db,
      log,
      increments,
      `the last incremental swap was cut off by the Data API and then rolled back, its error only in Aurora's log: ${error.message}`,
    );
    throw error;
  }
  if (!(error instanceof DatabaseError) || error.sqlState !== SYNC_SQLSTATE.incrementMismatch) {
    throw error;
  }
  // check_increment names the table quoted as quoteQualified writes it.
  const failed = increments.filter((table) =>
    error.message.includes(`of ${quoteQualified(table.live)} `),
  );
  await markAll(
    db,
    log,
    failed,
    `the last increment failed the whole-table check: ${error.message}`,
  );
  throw new IncrementMismatchError(error.message, { cause: error });
}

async function markAll(
  db: SqlClient,
  log: PipelineLog,
  tables: readonly PlannedTable[],
  reason: string,
): Promise<void> {
  for (const table of tables) {
    await requireFullRefresh(db, table.live, reason);
    log.warn('an increment was not applied; the next run of the table is full', {
      table: displayQualified(table.live),
      reason,
    });
  }
}

/** The rows each table's publish function reports (merge and increments count them). */
export function publishedRows(result: SwapResult): PublishedRows[] {
  return result.tables.flatMap(({ live, result: rows }) =>
    typeof rows.inserted === 'number'
      ? [
          {
            target: displayQualified(live),
            inserted: rows.inserted,
            updated: Number(rows.updated ?? 0),
            deleted: Number(rows.deleted ?? 0),
          },
        ]
      : [],
  );
}
