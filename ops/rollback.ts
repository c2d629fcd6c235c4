/**
 * Rolling a table back by hand: the previous version (kept by `rename`) swapped back into
 * place under the same lock discipline as any swap, retried while it comes back busy.
 */
import { displayQualified, type QualifiedName } from '../lambdas/core/identifiers';
import type { SqlClient } from '../lambdas/core/sql-client';
import { rollback } from '../lambdas/core/swap/engine';
import { LockWaitTimeoutError, retryDelayMs } from '../lambdas/core/swap/gate';

export interface RollbackOptions {
  readonly lockTimeoutMs: number;
  readonly maxWaitSeconds: number;
  readonly onBusy?: (message: string) => void;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly now?: () => number;
}

export async function rollbackTable(
  db: SqlClient,
  table: QualifiedName,
  options: RollbackOptions,
): Promise<{ readonly attempts: number; readonly lockHeldMs: number }> {
  const sleep =
    options.sleep ?? ((ms: number) => new Promise((resolve) => setTimeout(resolve, ms)));
  const now = options.now ?? Date.now;
  const started = now();
  const runId = `rollback-${new Date(started).toISOString().replace(/\D/g, '').slice(0, 14)}`;
  for (let attempt = 1; ; attempt += 1) {
    const outcome = await rollback(db, table, { runId, lockTimeoutMs: options.lockTimeoutMs });
    if (outcome.status === 'swapped') {
      return { attempts: attempt, lockHeldMs: outcome.result.lockHeldMs };
    }
    const waitedSeconds = (now() - started) / 1000;
    if (waitedSeconds >= options.maxWaitSeconds) {
      throw new LockWaitTimeoutError(
        waitedSeconds,
        [],
        [`rolling back ${displayQualified(table)}: the last attempt was busy (${outcome.message})`],
      );
    }
    options.onBusy?.(`${outcome.reason}; trying again`);
    await sleep(retryDelayMs(attempt, 1));
  }
}
