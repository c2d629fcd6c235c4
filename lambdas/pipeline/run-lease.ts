/**
 * The run lease (`redshift_sync.run_lease`): what keeps two runs of one environment from
 * overlapping. Step Functions' ListExecutions cannot: "This operation is eventually consistent.
 * The results are best effort and may not reflect very recent updates and changes."
 * (https://docs.aws.amazon.com/step-functions/latest/apireference/API_ListExecutions.html), so
 * two runs started together can both see none running. A row in Aurora taken by one atomic
 * statement can: of any number of runs taking it at once, exactly one gets it.
 */
import { ADMIN_SCHEMA } from '../core/schema/admin';
import type { SqlClient } from '../core/sql-client';
import type { ExecutionStatus } from './deps';

export type LeaseHolder = {
  readonly runId: string;
  readonly executionArn: string;
  readonly takenAt: string;
};

export type LeaseOutcome =
  /** This run holds the lease; `tookOverFrom` names the ended run that had left it. */
  | { readonly taken: true; readonly tookOverFrom: LeaseHolder | null }
  /** Another run holds it and is (or may be) still running. */
  | { readonly taken: false; readonly holder: LeaseHolder; readonly holderStatus: ExecutionStatus };

export interface LeaseRequest {
  readonly environment: string;
  readonly runId: string;
  readonly executionArn: string;
}

/**
 * Takes the lease when it is free, already this run's (a retried step), or held by `endedHolder`,
 * in one statement, and says who holds it afterwards. INSERT ... ON CONFLICT DO UPDATE "guarantees
 * an atomic INSERT or UPDATE outcome" even under concurrency, and in Read Committed a conflict
 * with a row another transaction has just committed still reaches that row ("the UPDATE clause
 * will affect that row, even though possibly no version of that row is conventionally visible to
 * the command"); a row the WHERE rejects is left as it is (but locked)
 * (https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT,
 * https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED).
 * So the compare-and-set on `endedHolder` lets only one of several runs take over a dead
 * run's lease. The holder is read in the same statement; that read uses the statement's
 * snapshot, which may predate the row it conflicted with: then no row comes back and the
 * caller asks again.
 */
const TAKE_SQL = `WITH taken AS (
    INSERT INTO ${ADMIN_SCHEMA}.run_lease AS lease (environment, run_id, execution_arn, taken_at)
    VALUES (:environment, :runId, :executionArn, clock_timestamp())
    ON CONFLICT (environment) DO UPDATE
      SET run_id = EXCLUDED.run_id, execution_arn = EXCLUDED.execution_arn,
          taken_at = EXCLUDED.taken_at
      WHERE lease.run_id = EXCLUDED.run_id OR lease.execution_arn = :endedHolder
    RETURNING run_id, execution_arn, taken_at
  )
  SELECT true AS taken, run_id AS "runId", execution_arn AS "executionArn",
         taken_at::text AS "takenAt"
    FROM taken
  UNION ALL
  SELECT false, run_id, execution_arn, taken_at::text
    FROM ${ADMIN_SCHEMA}.run_lease
   WHERE environment = :environment AND NOT EXISTS (SELECT FROM taken)`;

/** Rounds of "the lease changed hands while we looked" before giving up. */
const MAX_ATTEMPTS = 5;

/**
 * Takes the environment's lease for this run. A holder whose execution has ended (stopped,
 * timed out: it never gave the lease back) is taken over; `statusOf` asks Step Functions (or
 * the local registry) about that one execution.
 */
export async function takeRunLease(
  db: SqlClient,
  request: LeaseRequest,
  statusOf: (executionArn: string) => Promise<ExecutionStatus>,
): Promise<LeaseOutcome> {
  let endedHolder: LeaseHolder | null = null;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const [row] = await db.query<LeaseHolder & { taken: boolean }>(TAKE_SQL, {
      ...request,
      // Execution ARNs are never empty: '' matches no holder.
      endedHolder: endedHolder?.executionArn ?? '',
    });
    if (row?.taken) return { taken: true, tookOverFrom: endedHolder };
    // No row: the holder committed after this statement's snapshot; look again.
    if (!row) continue;
    const holder: LeaseHolder = {
      runId: row.runId,
      executionArn: row.executionArn,
      takenAt: row.takenAt,
    };
    const holderStatus = await statusOf(holder.executionArn);
    if (holderStatus !== 'ended') return { taken: false, holder, holderStatus };
    endedHolder = holder;
  }
  throw new Error(
    `the run lease of ${request.environment} changed hands ${MAX_ATTEMPTS} times while run ${request.runId} tried to take it; start the run again.`,
  );
}

/** Gives the lease back if this run holds it; another run's lease is left alone. */
export async function releaseRunLease(
  db: SqlClient,
  environment: string,
  runId: string,
): Promise<boolean> {
  const released = await db.query(
    `DELETE FROM ${ADMIN_SCHEMA}.run_lease
      WHERE environment = :environment AND run_id = :runId
     RETURNING run_id`,
    { environment, runId },
  );
  return released.length > 0;
}
