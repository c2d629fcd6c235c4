/**
 * The DDL preparePartitions runs on a live partitioned table before the swap (attaching a new
 * partition, finishing a pending detach) waits for its locks as every lock-taking statement of
 * the pipeline does: each attempt under a short lock_timeout, so that nobody queues behind it
 * for long, and after a lock timeout (55P03) or a deadlock (40P01) tried again, after the
 * swap's backoff with full jitter (retryDelayMs), until the run's locks.maxWaitSeconds or the
 * step's own time (the WaitBudget of prepareStaging) runs out, whichever comes first. A failed
 * attempt rolled back whole: nothing changed.
 */
import { SyncError } from '../errors';
import { displayQualified, type QualifiedName } from '../identifiers';
import { inspectLocks, type LockTarget } from '../locks/inspect';
import { lockVerdict } from '../locks/verdict';
import type { SqlClient } from '../sql-client';
import { busyReason } from '../swap/errors';
import { retryDelayMs } from '../swap/gate-decision';
import type { WaitBudget } from '../swap/long-statements';
import { DEFAULT_LOCK_TIMEOUT_MS, validateLockTimeoutMs } from '../swap/plan';
import { DEFAULT_WAIT_POLICY } from '../swap/policy';

/** The run's `locks` settings that bound the waiting (the configuration's, or the defaults). */
export interface LockRetrySettings {
  /** lock_timeout of each attempt, in ms. */
  readonly lockTimeoutMs: number;
  /** The ceiling of the backoff between attempts, in seconds. */
  readonly pollIntervalSeconds: number;
  /** How long to keep trying in all, in seconds (the step's own time may end it sooner). */
  readonly maxWaitSeconds: number;
  /** Draws the jitter, in [0, 1). */
  readonly random?: () => number;
}

export const DEFAULT_LOCK_RETRY: LockRetrySettings = {
  lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS,
  pollIntervalSeconds: DEFAULT_WAIT_POLICY.pollIntervalSeconds,
  maxWaitSeconds: DEFAULT_WAIT_POLICY.maxWaitSeconds,
};

/** Every attempt at a statement on a live partitioned table timed out on its locks. Live is unchanged. */
export class PartitionLockTimeoutError extends SyncError {}

/** What is being done, for the error when the retries run out. */
export interface LockedWork {
  readonly table: QualifiedName;
  /** e.g. "attach its new partition public.events_2024_01_05". */
  readonly doing: string;
  /** e.g. "SHARE UPDATE EXCLUSIVE on public.events". */
  readonly locks: string;
  /** The relations and modes whose current holders the error names. */
  readonly targets: readonly LockTarget[];
}

/** Runs `attempt(lockTimeoutMs)` until it gets its locks, as the module comment says. */
export async function withLockRetries<T>(
  db: SqlClient,
  budget: WaitBudget,
  settings: LockRetrySettings,
  work: LockedWork,
  attempt: (lockTimeoutMs: number) => Promise<T>,
): Promise<T> {
  const lockTimeoutMs = validateLockTimeoutMs(settings.lockTimeoutMs);
  const random = settings.random ?? Math.random;
  const started = budget.now();
  const deadline = Math.min(budget.deadline, started + settings.maxWaitSeconds * 1000);
  for (let attempts = 1; ; attempts += 1) {
    try {
      return await attempt(lockTimeoutMs);
    } catch (error) {
      const reason = busyReason(error);
      if (!reason) throw error;
      const delayMs = retryDelayMs(attempts - 1, settings.pollIntervalSeconds, random());
      if (budget.now() + delayMs >= deadline) {
        throw await outOfRetries(db, work, {
          attempts,
          lockTimeoutMs,
          seconds: (budget.now() - started) / 1000,
          reason,
          cause: error,
        });
      }
      await budget.sleep(delayMs);
    }
  }
}

async function outOfRetries(
  db: SqlClient,
  work: LockedWork,
  tried: {
    attempts: number;
    lockTimeoutMs: number;
    seconds: number;
    reason: string;
    cause: unknown;
  },
): Promise<PartitionLockTimeoutError> {
  // Who holds a conflicting lock now is most likely who held it all along. A failed look must
  // not hide the real error: it only names people.
  const blockers = await inspectLocks(db, work.targets)
    .then((holders) => {
      const verdict = lockVerdict(holders, { graceSeconds: 0 });
      return verdict.safe ? [] : verdict.blockers.map((blocker) => blocker.reason);
    })
    .catch(() => []);
  const table = displayQualified(work.table);
  return new PartitionLockTimeoutError(
    `${table}: could not ${work.doing}: it needs ${work.locks}, and all ${tried.attempts} attempts in ${tried.seconds.toFixed(1)} s, each waiting at most ${tried.lockTimeoutMs} ms (locks.lockTimeoutMs), ended in a ${tried.reason}. Nothing was published and ${table} is unchanged. ${
      blockers.length > 0
        ? `Holding a conflicting lock now:\n- ${blockers.join('\n- ')}\n`
        : 'Nobody holds a conflicting lock now: the holders were short-lived or have just finished. '
    }Let the session holding the lock finish (or end it), or raise locks.maxWaitSeconds, then run again.`,
    { cause: tried.cause },
  );
}
