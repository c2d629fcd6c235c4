/**
 * "Check locks on the live tables", "End the sessions blocking the swap" and "Swap staging
 * into live": the lock gate of the swap engine, cut into steps the state machine can wait
 * between. The check polls inside the Lambda for a while, so a released lock is noticed
 * within about pollIntervalSeconds without paying a state transition per poll.
 */
import { inspectLocks, type LockTarget } from '../../core/locks/inspect';
import { terminateBlockers } from '../../core/locks/terminate';
import { type Blocker, lockVerdict } from '../../core/locks/verdict';
import { attemptSwap, preflight } from '../../core/swap/engine';
import {
  attemptLockTimeoutMs,
  DEFAULT_WAIT_POLICY,
  gateDecision,
  LockWaitTimeoutError,
  lockTargets,
  retryDelayMs,
} from '../../core/swap/gate';
import type { PipelineDeps } from '../deps';
import { loadRun, type RunContext, runSwapPlan } from '../run-context';
import {
  type BlockerState,
  describeBlocker,
  expectObject,
  expectRun,
  type LocksState,
  type SwapState,
} from '../state';

/** How long one check polls before handing back to the state machine's Wait state. */
export const LOCK_CHECK_BUDGET_SECONDS = 50;
/** Quick attempts one swap step makes before going back to waiting. */
export const SWAP_ATTEMPTS_PER_STEP = 3;

function previousLocks(state: unknown): LocksState | null {
  const locks = expectObject(state, 'the step input').locks;
  return locks && typeof locks === 'object' ? (locks as LocksState) : null;
}

async function currentBlockers(
  deps: PipelineDeps,
  context: RunContext,
  targets: readonly LockTarget[],
): Promise<Blocker[]> {
  const verdict = lockVerdict(await inspectLocks(deps.aurora, targets), {
    graceSeconds: context.config.locks.graceSeconds,
  });
  return verdict.safe ? [] : verdict.blockers;
}

function mergeSeen(
  seen: readonly BlockerState[],
  blockers: readonly BlockerState[],
): BlockerState[] {
  const merged = [...seen];
  for (const blocker of blockers) {
    if (!merged.some((known) => known.pid === blocker.pid && known.relation === blocker.relation)) {
      merged.push(blocker);
    }
  }
  return merged;
}

export async function checkLocks(state: unknown, deps: PipelineDeps): Promise<LocksState> {
  const context = await loadRun(deps, expectRun(state));
  const previous = previousLocks(state);
  const stepStarted = deps.now();
  const record = await context.files.readUnload();
  if (!previous) {
    // First look: everything that would make the swap fail is reported before any waiting.
    await preflight(
      deps.aurora,
      record.transfers.map((transfer) => ({
        live: transfer.table.target,
        staging: transfer.staging,
        strategy: transfer.table.strategy,
      })),
      { withStaging: true, onMaxWait: context.config.locks.onMaxWait },
    );
  }
  const firstCheckAt = previous?.firstCheckAt ?? stepStarted;
  let seen = previous?.blockersSeen ?? [];
  let checks = previous?.checks ?? 0;
  const pollMs = context.run.pollIntervalSeconds * 1000;
  // The plan (run files, merge keys) is fixed for the run: read it once, not on every poll.
  const targets = lockTargets(await runSwapPlan(deps, context, record));
  for (;;) {
    const blockers = await currentBlockers(deps, context, targets);
    checks += 1;
    const described = blockers.map((blocker) => describeBlocker(blocker.holder, blocker.reason));
    seen = mergeSeen(seen, described);
    const waitedSeconds = (deps.now() - firstCheckAt) / 1000;
    const decision = gateDecision(blockers, waitedSeconds, {
      maxWaitSeconds: context.run.maxWaitSeconds,
      onMaxWait: context.config.locks.onMaxWait,
    });
    const result = (kind: LocksState['decision']): LocksState => ({
      decision: kind,
      firstCheckAt,
      waitedSeconds,
      checks,
      blockers: described,
      blockersSeen: seen,
    });
    if (decision.action === 'give up') throw new LockWaitTimeoutError(waitedSeconds, blockers);
    if (decision.action === 'swap' || decision.action === 'terminate') {
      return result(decision.action);
    }
    if (checks === (previous?.checks ?? 0) + 1) {
      deps.log.info('waiting for sessions that hold conflicting locks', {
        waitedSeconds: Math.round(waitedSeconds),
        blockers: described.map((blocker) => blocker.reason),
      });
    }
    const elapsedMs = deps.now() - stepStarted;
    const remainingWaitMs = context.run.maxWaitSeconds * 1000 - (deps.now() - firstCheckAt);
    if (elapsedMs + pollMs > LOCK_CHECK_BUDGET_SECONDS * 1000 || remainingWaitMs <= 0) {
      return result('wait');
    }
    await deps.sleep(Math.min(pollMs, Math.max(remainingWaitMs, 0) + 1));
  }
}

export async function endBlockers(
  state: unknown,
  deps: PipelineDeps,
): Promise<{ terminated: readonly unknown[] }> {
  const context = await loadRun(deps, expectRun(state));
  const previous = previousLocks(state);
  const plan = await runSwapPlan(deps, context, await context.files.readUnload());
  const blockers = await currentBlockers(deps, context, lockTargets(plan));
  const records = await terminateBlockers(deps.aurora, blockers, {
    graceSeconds: context.config.locks.graceSeconds,
    ownApplicationPrefix: DEFAULT_WAIT_POLICY.ownApplicationPrefix,
  });
  for (const record of records) {
    deps.log.warn(record.terminated ? 'terminated a blocking session' : 'could not terminate', {
      pid: record.pid,
      user: record.user,
      application: record.applicationName,
      transactionSeconds: record.transactionAgeSeconds,
      query: record.query,
      reason: record.reason,
    });
  }
  const survivors = records.filter((record) => !record.terminated);
  if (survivors.length > 0) {
    throw new LockWaitTimeoutError(
      previous?.waitedSeconds ?? 0,
      blockers,
      survivors.map(
        (record) =>
          `pid ${record.pid ?? record.gid} was not terminated: ${record.reason}${record.advice ? `; ${record.advice}` : ''}`,
      ),
    );
  }
  deps.metrics.record('SessionsTerminated', 'Count', records.length);
  return { terminated: records };
}

export async function swapTables(state: unknown, deps: PipelineDeps): Promise<SwapState> {
  const context = await loadRun(deps, expectRun(state));
  const plan = await runSwapPlan(deps, context, await context.files.readUnload());
  let lockTimeoutMs = plan.lockTimeoutMs;
  let reason = '';
  for (let attempt = 1; attempt <= SWAP_ATTEMPTS_PER_STEP; attempt += 1) {
    const outcome = await attemptSwap(deps.aurora, { ...plan, lockTimeoutMs });
    if (outcome.status === 'swapped') {
      deps.metrics.record('SwapLockHeld', 'Milliseconds', outcome.result.lockHeldMs);
      deps.log.info('swapped', {
        tables: context.run.targets,
        attempt,
        lockWaitMs: outcome.result.lockWaitMs,
        lockHeldMs: outcome.result.lockHeldMs,
      });
      return {
        swapped: true,
        attempts: attempt,
        lockWaitMs: outcome.result.lockWaitMs,
        lockHeldMs: outcome.result.lockHeldMs,
        swappedAt: new Date(deps.now()).toISOString(),
      };
    }
    reason = `${outcome.reason}: ${outcome.message}`;
    deps.log.info('swap attempt was busy; nothing changed', { attempt, reason });
    if (attempt < SWAP_ATTEMPTS_PER_STEP) {
      await deps.sleep(retryDelayMs(attempt, context.run.pollIntervalSeconds));
      lockTimeoutMs = attemptLockTimeoutMs(
        lockVerdict(await inspectLocks(deps.aurora, lockTargets(plan)), {
          graceSeconds: context.config.locks.graceSeconds,
        }),
        plan.lockTimeoutMs,
        await deadlockTimeoutMs(deps),
      );
      if (lockTimeoutMs !== plan.lockTimeoutMs) {
        deps.log.info(
          'a plain autovacuum is in the way: waiting past deadlock_timeout so it gives way',
          {
            lockTimeoutMs,
          },
        );
      }
    }
  }
  const locks = previousLocks(state);
  const waitedSeconds = locks ? (deps.now() - locks.firstCheckAt) / 1000 : 0;
  if (waitedSeconds >= context.run.maxWaitSeconds && context.config.locks.onMaxWait === 'fail') {
    // Nobody held a lock for long, yet every attempt collided with someone: the same end as
    // waiting for a long holder, and the same answer.
    throw new LockWaitTimeoutError(waitedSeconds, [], [`the last attempt: ${reason}`]);
  }
  return { swapped: false, attempts: SWAP_ATTEMPTS_PER_STEP, reason };
}

async function deadlockTimeoutMs(deps: PipelineDeps): Promise<number> {
  const [row] = await deps.aurora.query<{ ms: number }>(
    `SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::int AS ms`,
  );
  return row!.ms;
}
