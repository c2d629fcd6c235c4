/**
 * When the whole-table proof of an increment fails inside the swap (SQLSTATE RS002), the swap
 * rolled back: live is as it was, and so is the watermark. The table is then marked, in its
 * own statement, so that its next run is full and says why; the run fails naming the table and
 * the figures that differ.
 */
import { DatabaseError, SyncError } from '../core/errors';
import { displayQualified, quoteQualified } from '../core/identifiers';
import { requireFullRefresh } from '../core/increment/mode';
import { SYNC_SQLSTATE } from '../core/schema/sqlstates';
import type { SwapResult } from '../core/swap/engine';
import type { SwapPlan } from '../core/swap/plan';
import type { PipelineDeps } from './deps';
import type { PublishedRows } from './state';

/** An increment did not leave live equal to the whole source table; nothing was published. */
export class IncrementMismatchError extends SyncError {}

export async function applyIncrementMismatch(
  deps: PipelineDeps,
  plan: SwapPlan,
  error: unknown,
): Promise<never> {
  if (!(error instanceof DatabaseError) || error.sqlState !== SYNC_SQLSTATE.incrementMismatch) {
    throw error;
  }
  // check_increment names the table quoted as quoteQualified writes it.
  const table = plan.tables.find(
    (candidate) =>
      candidate.increment && error.message.includes(`of ${quoteQualified(candidate.live)} `),
  );
  if (table) {
    await requireFullRefresh(
      deps.aurora,
      table.live,
      `the last increment failed the whole-table check: ${error.message}`,
    );
    deps.log.warn('an increment failed the whole-table check; the next run of the table is full', {
      table: displayQualified(table.live),
    });
  }
  throw new IncrementMismatchError(error.message, { cause: error });
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
