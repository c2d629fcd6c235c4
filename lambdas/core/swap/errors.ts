/**
 * What a failed swap statement means: "not now" (someone holds a lock we need; nothing
 * changed; try again), "cannot be done this way" (a preflight refusal found under the locks),
 * or a real failure.
 */
import { DatabaseError, PreflightError } from '../errors';
import { SYNC_SQLSTATE } from '../schema/sqlstates';

export { SYNC_SQLSTATE };

export type BusyReason = 'lock timeout' | 'deadlock' | 'distributed deadlock';

/**
 * Aurora Limitless ends a transaction in a distributed deadlock with "ERROR: aborting
 * transaction participating in a distributed deadlock"
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-query.deadlocks.html);
 * its SQLSTATE is not documented, so the message is what tells it (test/limitless-locks.test.ts
 * has a real PostgreSQL raise it with SQLSTATE P0001).
 */
const DISTRIBUTED_DEADLOCK = /aborting transaction participating in a distributed deadlock/i;

export function busyReason(error: unknown): BusyReason | null {
  if (!(error instanceof DatabaseError)) return null;
  if (DISTRIBUTED_DEADLOCK.test(error.message)) return 'distributed deadlock';
  if (error.sqlState === '55P03') return 'lock timeout';
  if (error.sqlState === '40P01') return 'deadlock';
  return null;
}

/** Turns a refusal raised under the locks into the same error the preflight gives. */
export function asPreflightError(error: unknown): PreflightError | null {
  if (!(error instanceof DatabaseError) || !error.sqlState?.startsWith('RS1')) return null;
  const message = error.hint ? `${error.message}. ${error.hint}` : error.message;
  return new PreflightError(message, [message], { cause: error });
}
