/**
 * Rolling a table back by hand: the previous version (kept by `rename`) readied once, then
 * swapped back into place through the same lock gate as a run's swap: it waits for long
 * readers (looking at pg_locks) instead of sending exclusive requests at them, and gives up
 * (or ends the blockers) after maxWaitSeconds, as the locks settings say.
 */

import type { QualifiedName } from '../lambdas/core/identifiers';
import type { SqlClient } from '../lambdas/core/sql-client';
import { prepareRollback } from '../lambdas/core/swap/engine';
import { type SwapProgress, swapWhenSafe } from '../lambdas/core/swap/gate';
import type { WaitPolicy } from '../lambdas/core/swap/policy';

export interface RollbackOptions extends WaitPolicy {
  readonly lockTimeoutMs: number;
  readonly onProgress?: (progress: SwapProgress) => void;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

export async function rollbackTable(
  db: SqlClient,
  table: QualifiedName,
  options: RollbackOptions,
): Promise<{ readonly attempts: number; readonly lockHeldMs: number }> {
  const { lockTimeoutMs, onProgress, sleep, now, ...policy } = options;
  const started = (now ?? Date.now)();
  const runId = `rollback-${new Date(started).toISOString().replace(/\D/g, '').slice(0, 14)}`;
  const plan = await prepareRollback(db, table, {
    runId,
    lockTimeoutMs,
    onMaxWait: policy.onMaxWait,
  });
  const outcome = await swapWhenSafe(db, plan, policy, { onProgress, sleep, now });
  return { attempts: outcome.attempts, lockHeldMs: outcome.result.lockHeldMs };
}
