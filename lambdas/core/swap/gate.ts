/**
 * The lock gate: wait until the swap is worth attempting, attempt it under a short
 * lock_timeout, and retry with backoff and jitter while it comes back busy, for at most
 * maxWaitSeconds. The decision is pure (`gateDecision`); `swapWhenSafe` is the loop the local
 * run, the tests and the benchmark use, and the state machine runs the same steps as states.
 */
import { SyncError } from '../errors';
import { inspectLocks, type LockTarget } from '../locks/inspect';
import { type TerminatedSession, terminateBlockers } from '../locks/terminate';
import {
  type Blocker,
  DEFAULT_GRACE_SECONDS,
  type LockVerdict,
  lockVerdict,
} from '../locks/verdict';
import type { SqlClient } from '../sql-client';
import { attemptSwap, type SwapResult } from './engine';
import type { SwapPlan } from './plan';

export type OnMaxWait = 'fail' | 'terminate';

export interface WaitPolicy {
  /** Conflicting holders younger than this do not make us wait. Default 2. */
  readonly graceSeconds?: number;
  /** How often to look again while blocked. Default 1. */
  readonly pollIntervalSeconds?: number;
  /** How long to wait for blockers in all. Default 3600. */
  readonly maxWaitSeconds?: number;
  /** What to do when blockers outlast maxWaitSeconds. Default 'fail'. */
  readonly onMaxWait?: OnMaxWait;
  /** application_name prefix of our own sessions, never terminated. */
  readonly ownApplicationPrefix?: string;
}

export const DEFAULT_WAIT_POLICY = {
  graceSeconds: DEFAULT_GRACE_SECONDS,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 3600,
  onMaxWait: 'fail',
  ownApplicationPrefix: 'redshift-aurora-sync',
} as const satisfies Required<WaitPolicy>;

/** Blockers outlasted maxWaitSeconds and onMaxWait is 'fail'. Live tables are untouched. */
export class LockWaitTimeoutError extends SyncError {
  constructor(
    readonly waitedSeconds: number,
    readonly blockers: readonly Blocker[],
    notes: readonly string[] = [],
  ) {
    super(
      `Gave up after waiting ${waitedSeconds.toFixed(0)} s for locks; live tables are unchanged and staging is kept for a re-run. Blocking now:\n- ${[
        ...(blockers.length > 0
          ? blockers.map((blocker) => blocker.reason)
          : ['nobody for long: every attempt collided with short-lived lock holders']),
        ...notes,
      ].join('\n- ')}`,
    );
  }
}

export type GateDecision =
  | { readonly action: 'swap' }
  | { readonly action: 'wait'; readonly blockers: readonly Blocker[] }
  | { readonly action: 'terminate'; readonly blockers: readonly Blocker[] }
  | { readonly action: 'give up'; readonly blockers: readonly Blocker[] };

/** What to do, given who blocks now and how long we have waited. Pure. */
export function gateDecision(
  blockers: readonly Blocker[],
  waitedSeconds: number,
  policy: WaitPolicy = {},
): GateDecision {
  const { maxWaitSeconds, onMaxWait } = { ...DEFAULT_WAIT_POLICY, ...policy };
  if (blockers.length === 0) return { action: 'swap' };
  if (waitedSeconds < maxWaitSeconds) return { action: 'wait', blockers };
  return onMaxWait === 'terminate'
    ? { action: 'terminate', blockers }
    : { action: 'give up', blockers };
}

/**
 * The relations a plan locks, in the modes it takes (see swap_locks in ../schema/swap.ts):
 * staging and the sequences it owns; live; with rename, the views on live and the sequences
 * live owns. Views and sequences are checked in their table's mode, which STRATEGY_LOCKS
 * gives them wherever they are locked at all.
 */
export function lockTargets(plan: SwapPlan): LockTarget[] {
  return plan.tables.flatMap((table) => [
    {
      relation: table.staging,
      mode: table.stagingLock,
      includeDependentViews: false,
      includeOwnedSequences: true,
    },
    {
      relation: table.live,
      mode: table.liveLock,
      includeDependentViews: table.viewLock !== null,
      includeOwnedSequences: table.liveSequenceLock !== null,
    },
  ]);
}

/**
 * Delay before the next attempt after a busy one: exponential from 50 ms, capped at the poll
 * interval, with full jitter so that retries do not fall into step with a periodic reader.
 */
export function retryDelayMs(
  busyAttempts: number,
  pollIntervalSeconds: number,
  random = Math.random,
): number {
  const ceiling = Math.min(pollIntervalSeconds * 1000, 50 * 2 ** Math.min(busyAttempts, 16));
  return Math.round(random() * ceiling);
}

/** How far past deadlock_timeout an attempt waits when it asks a plain autovacuum to give way. */
export const AUTOVACUUM_MARGIN_MS = 250;

/**
 * The lock_timeout for the next attempt. A plain autovacuum gives way to a conflicting lock
 * request, but PostgreSQL only cancels it once the request has waited deadlock_timeout
 * (1 s by default), longer than our usual lock_timeout: attempts would keep timing out
 * without ever making it give way, for as long as the vacuum runs (minutes on a large table).
 * When a plain autovacuum is in the way and nobody else counts as a blocker, the attempt
 * waits just past deadlock_timeout instead; readers queue behind it that long at most, once.
 */
export function attemptLockTimeoutMs(
  verdict: LockVerdict,
  lockTimeoutMs: number,
  deadlockTimeoutMs: number,
): number {
  const autovacuumInTheWay =
    verdict.safe && verdict.ignored.some((holder) => holder.reason === 'autovacuum gives way');
  if (!autovacuumInTheWay) return lockTimeoutMs;
  return Math.min(60_000, Math.max(lockTimeoutMs, deadlockTimeoutMs + AUTOVACUUM_MARGIN_MS));
}

export interface SwapProgress {
  readonly kind: 'waiting' | 'busy' | 'terminated';
  readonly waitedSeconds: number;
  readonly blockers?: readonly Blocker[];
  readonly terminated?: readonly TerminatedSession[];
  readonly message?: string;
}

export interface SwapOutcome {
  readonly result: SwapResult;
  readonly waitedSeconds: number;
  readonly attempts: number;
  /** Every distinct blocking session seen while waiting, by its reason at first sight. */
  readonly blockersSeen: readonly Blocker[];
  readonly terminated: readonly TerminatedSession[];
}

export async function swapWhenSafe(
  db: SqlClient,
  plan: SwapPlan,
  policy: WaitPolicy = {},
  hooks: {
    readonly onProgress?: (progress: SwapProgress) => void;
    readonly sleep?: (ms: number) => Promise<void>;
    readonly now?: () => number;
  } = {},
): Promise<SwapOutcome> {
  const settings = { ...DEFAULT_WAIT_POLICY, ...policy };
  const sleep =
    hooks.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const now = hooks.now ?? Date.now;
  const started = now();
  const targets = lockTargets(plan);
  const blockersSeen = new Map<string, Blocker>();
  const terminated: TerminatedSession[] = [];
  let attempts = 0;
  let busyAttempts = 0;
  for (;;) {
    const waitedSeconds = (now() - started) / 1000;
    const verdict = lockVerdict(await inspectLocks(db, targets), {
      graceSeconds: settings.graceSeconds,
    });
    const blockers = verdict.safe ? [] : verdict.blockers;
    for (const blocker of blockers) {
      const session = `${blocker.holder.pid ?? blocker.holder.gid}`;
      if (!blockersSeen.has(session)) blockersSeen.set(session, blocker);
    }
    const decision = gateDecision(blockers, waitedSeconds, settings);
    if (decision.action === 'give up')
      throw new LockWaitTimeoutError(waitedSeconds, decision.blockers);
    if (decision.action === 'wait') {
      hooks.onProgress?.({ kind: 'waiting', waitedSeconds, blockers });
      await sleep(settings.pollIntervalSeconds * 1000);
      continue;
    }
    if (decision.action === 'terminate') {
      const records = await terminateBlockers(db, decision.blockers, {
        graceSeconds: settings.graceSeconds,
        ownApplicationPrefix: settings.ownApplicationPrefix,
      });
      terminated.push(...records);
      hooks.onProgress?.({ kind: 'terminated', waitedSeconds, terminated: records });
      const survivors = records.filter((record) => !record.terminated);
      if (survivors.length > 0) {
        throw new LockWaitTimeoutError(
          waitedSeconds,
          decision.blockers.filter((blocker) =>
            survivors.some(
              (record) => record.pid === blocker.holder.pid && record.gid === blocker.holder.gid,
            ),
          ),
          survivors.map(
            (record) =>
              `pid ${record.pid ?? record.gid} was not terminated: ${record.reason}${record.advice ? `; ${record.advice}` : ''}`,
          ),
        );
      }
    }
    attempts += 1;
    const attempt = await attemptSwap(db, plan);
    if (attempt.status === 'swapped') {
      return {
        result: attempt.result,
        waitedSeconds: (now() - started) / 1000,
        attempts,
        blockersSeen: [...blockersSeen.values()],
        terminated,
      };
    }
    hooks.onProgress?.({
      kind: 'busy',
      waitedSeconds,
      message: `${attempt.reason}: ${attempt.message}`,
    });
    if (waitedSeconds >= settings.maxWaitSeconds && settings.onMaxWait === 'fail') {
      throw new LockWaitTimeoutError(waitedSeconds, blockers);
    }
    await sleep(retryDelayMs(busyAttempts++, settings.pollIntervalSeconds));
  }
}
