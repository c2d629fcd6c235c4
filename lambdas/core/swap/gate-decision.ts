/**
 * The lock gate's one decision: given who holds conflicting locks now, how long we have waited
 * and what earlier attempts ran into, what to do next. Pure, so every rule is unit-tested; the
 * state machine's steps, `swapWhenSafe` (local run, tests, benchmark) and the rollback command
 * all drive this same function, each with its own loop around it.
 */
import * as z from 'zod';
import { count } from '../config-fields';
import type { LockHolder } from '../locks/inspect';
import { type Blocker, blockerReason, type LockVerdict } from '../locks/verdict';
import {
  DEFAULT_WAIT_POLICY,
  maxWaitAction,
  mayTerminate,
  type OnMaxWaitSetting,
  type WaitPolicy,
} from './policy';

/**
 * Busy attempts a session may collide with before it counts as a blocker although each of its
 * transactions is younger than the grace period: a reader running back-to-back transactions
 * longer than lock_timeout would otherwise make every attempt time out, forever.
 */
export const COLLISIONS_BEFORE_BLOCKER = 3;

/**
 * Rounds of ending the blocking sessions (onMaxWait terminate) before giving up. A reader that
 * runs back-to-back transactions may be between two of them when the others are ended, and
 * collide with the attempt that follows; a few rounds end it too, and still bound the wait.
 */
export const MAX_TERMINATION_ROUNDS = 3;

/** How many colliding sessions the history remembers (it travels in the state machine's state). */
export const REMEMBERED_SESSIONS = 50;

/** How far past deadlock_timeout an attempt waits when it asks a plain autovacuum to give way. */
export const AUTOVACUUM_MARGIN_MS = 250;

/** The first delay after a busy attempt; it doubles per busy attempt up to the poll interval. */
export const FIRST_RETRY_DELAY_MS = 50;

export interface GatePolicy extends WaitPolicy {
  /** lock_timeout of an ordinary attempt. */
  readonly lockTimeoutMs: number;
  /** The server's deadlock_timeout: how long a request waits before a plain autovacuum gives way. */
  readonly deadlockTimeoutMs: number;
}

/** What earlier attempts ran into. Small and JSON, so the state machine can carry it. */
export const gateHistory = z.object({
  busyAttempts: count,
  /** Seconds since the first check, at the last busy attempt. */
  lastBusyAtSeconds: z.number().nullable(),
  /** The pause after the last busy attempt (backoff with jitter, drawn when it was recorded). */
  retryAfterMs: z.number().min(0),
  /**
   * Sessions that held a conflicting lock right after busy attempts, and after how many: most
   * collisions first, at most REMEMBERED_SESSIONS.
   */
  collisions: z
    .array(z.object({ session: z.string(), count: z.int().min(1) }))
    .max(REMEMBERED_SESSIONS)
    .readonly(),
  /** Seconds since the first check, when the blocking sessions were last ended (onMaxWait terminate). */
  blockersEndedAtSeconds: z.number().nullable(),
  /** How many times the blocking sessions were ended; absent in histories written before it. */
  terminationRounds: count.optional(),
});
export type GateHistory = z.infer<typeof gateHistory>;

export const NO_HISTORY: GateHistory = {
  busyAttempts: 0,
  lastBusyAtSeconds: null,
  retryAfterMs: 0,
  collisions: [],
  blockersEndedAtSeconds: null,
  terminationRounds: 0,
};

export interface GateObservation {
  /** lockVerdict of the holders inspectLocks found just now, under the policy's grace. */
  readonly verdict: LockVerdict;
  /** Seconds since the first check. */
  readonly waitedSeconds: number;
}

export type GateAction =
  | {
      readonly action: 'wait';
      /** `blocked`: blockers hold the locks; `backing off`: the pause after a busy attempt. */
      readonly why: 'blocked' | 'backing off';
      readonly waitMs: number;
      readonly blockers: readonly Blocker[];
    }
  | { readonly action: 'attempt'; readonly lockTimeoutMs: number }
  | { readonly action: 'end blockers'; readonly blockers: readonly Blocker[] }
  | {
      readonly action: 'give up';
      readonly blockers: readonly Blocker[];
      readonly notes: readonly string[];
    };

/** A session's identity across inspections: its pid, or a prepared transaction's gid. */
export function sessionKey(holder: Pick<LockHolder, 'pid' | 'gid' | 'subcluster'>): string {
  if (holder.pid === null) return `gid ${holder.gid}`;
  // On Aurora Limitless pids are per node: the same pid on two subclusters is two sessions.
  return holder.subcluster ? `pid ${holder.pid} on ${holder.subcluster.id}` : `pid ${holder.pid}`;
}

/**
 * Who blocks: the verdict's blockers, plus the young holders whose session has collided with
 * COLLISIONS_BEFORE_BLOCKER busy attempts (grace does not protect them any more).
 */
export function gateBlockers(verdict: LockVerdict, history: GateHistory): Blocker[] {
  const blockers = verdict.safe ? [] : [...verdict.blockers];
  for (const { holder, reason } of verdict.ignored) {
    if (reason !== 'younger than grace') continue;
    const count = collisionsOf(history, holder);
    if (count >= COLLISIONS_BEFORE_BLOCKER) {
      blockers.push({
        holder,
        reason: `${blockerReason(holder)} (each of its transactions is short, but it held the lock through ${count} swap attempts)`,
      });
    }
  }
  return blockers;
}

/** Every holder whose lock conflicts with ours and will not give way, young or old. */
function conflictingHolders(verdict: LockVerdict): Blocker[] {
  const young = verdict.ignored
    .filter((ignored) => ignored.reason === 'younger than grace')
    .map(({ holder }) => ({ holder, reason: blockerReason(holder) }));
  return [...(verdict.safe ? [] : verdict.blockers), ...young];
}

function collisionsOf(history: GateHistory, holder: LockHolder): number {
  const key = sessionKey(holder);
  return history.collisions.find((entry) => entry.session === key)?.count ?? 0;
}

/**
 * The next step. In order:
 * - after the blocking sessions were ended (onMaxWait terminate): anyone still blocking, or a
 *   busy attempt since, is ended in turn (as at maxWaitSeconds: unless the policy fails one of
 *   them), up to MAX_TERMINATION_ROUNDS rounds, then `give up`; otherwise `attempt`;
 * - blockers before maxWaitSeconds: `wait` a poll interval (at most until maxWaitSeconds);
 * - blockers at maxWaitSeconds: `end blockers` when onMaxWait terminates the class of every
 *   one of them, else `give up` (see atMaxWait: nobody is ended for a run that fails anyway);
 * - past maxWaitSeconds with an attempt already busy there: grace no longer protects anyone,
 *   every conflicting holder is judged the same way;
 * - otherwise `attempt`, after the backoff pause that follows a busy attempt.
 * So every loop driving it ends within maxWaitSeconds plus MAX_TERMINATION_ROUNDS rounds of
 * ending sessions and attempting.
 */
export function gateDecision(
  observation: GateObservation,
  policy: GatePolicy,
  history: GateHistory,
): GateAction {
  const settings = { ...DEFAULT_WAIT_POLICY, ...policy };
  const { verdict, waitedSeconds } = observation;
  const blockers = gateBlockers(verdict, history);
  const ended = history.blockersEndedAtSeconds;
  const lastBusy = history.lastBusyAtSeconds;
  if (ended !== null) {
    const roundsLeft = (history.terminationRounds ?? 1) < MAX_TERMINATION_ROUNDS;
    if (blockers.length > 0) {
      return roundsLeft
        ? atMaxWait(blockers, settings.onMaxWait)
        : {
            action: 'give up',
            blockers,
            notes: [
              `they were still there after ending the blocking sessions ${MAX_TERMINATION_ROUNDS} times`,
            ],
          };
    }
    if (lastBusy !== null && lastBusy >= ended) {
      const inTheWay = conflictingHolders(verdict);
      return roundsLeft && inTheWay.length > 0
        ? atMaxWait(inTheWay, settings.onMaxWait)
        : {
            action: 'give up',
            blockers: inTheWay,
            notes: ['the attempt after ending the blocking sessions was still busy'],
          };
    }
    return { action: 'attempt', lockTimeoutMs: attemptLockTimeoutMs(verdict, blockers, policy) };
  }
  const overdue = waitedSeconds >= settings.maxWaitSeconds;
  if (blockers.length > 0) {
    if (!overdue) {
      const remainingMs = Math.ceil((settings.maxWaitSeconds - waitedSeconds) * 1000);
      const waitMs = Math.max(1, Math.min(settings.pollIntervalSeconds * 1000, remainingMs));
      return { action: 'wait', why: 'blocked', waitMs, blockers };
    }
    return atMaxWait(blockers, settings.onMaxWait);
  }
  if (overdue && lastBusy !== null && lastBusy >= settings.maxWaitSeconds) {
    return atMaxWait(conflictingHolders(verdict), settings.onMaxWait);
  }
  if (lastBusy !== null) {
    const pauseLeftMs = Math.round(history.retryAfterMs - (waitedSeconds - lastBusy) * 1000);
    if (pauseLeftMs > 0) {
      return { action: 'wait', why: 'backing off', waitMs: pauseLeftMs, blockers: [] };
    }
  }
  return { action: 'attempt', lockTimeoutMs: attemptLockTimeoutMs(verdict, blockers, policy) };
}

/**
 * What onMaxWait does with these blockers: end them all when it terminates every one's class,
 * else give up without ending any. Ending some and failing anyway would cost their users their
 * work (a notebook's session, a report) and still leave live tables as they were; the run fails
 * naming the blockers whose class fails, and the ones spared for that reason.
 */
export function atMaxWait(
  blockers: readonly Blocker[],
  onMaxWait: OnMaxWaitSetting | undefined,
): Extract<GateAction, { action: 'end blockers' | 'give up' }> {
  const judged = blockers.map((blocker) => ({
    blocker,
    ...maxWaitAction(blocker.holder, onMaxWait),
  }));
  const failing = judged.filter((entry) => entry.action === 'fail');
  // Nobody to judge (a busy attempt past maxWaitSeconds with no holder in sight): a policy that
  // ends sessions lets the loop end whoever shows up next, as before; one that only fails, fails.
  if (blockers.length === 0 && !mayTerminate(onMaxWait)) {
    return { action: 'give up', blockers, notes: [] };
  }
  if (failing.length === 0) return { action: 'end blockers', blockers };
  const spared = judged.filter((entry) => entry.action === 'terminate');
  const name = (entry: (typeof judged)[number]) =>
    `${entry.blocker.holder.pid === null ? `prepared transaction ${entry.blocker.holder.gid}` : `pid ${entry.blocker.holder.pid}`} (${entry.blockerClass}${entry.exception ? `: ${entry.exception}` : ''})`;
  const unique = (names: string[]) => [...new Set(names)].join(', ');
  return {
    action: 'give up',
    blockers,
    notes:
      spared.length === 0
        ? []
        : [
            `nobody was terminated: onMaxWait fails the run for ${unique(failing.map(name))}, so ending ${unique(spared.map(name))} would not have let the swap through`,
          ],
  };
}

/**
 * The lock_timeout of the next attempt. A plain autovacuum gives way to a conflicting lock
 * request, but PostgreSQL only cancels it once the request has waited deadlock_timeout
 * (1 s by default), longer than our usual lock_timeout: attempts would keep timing out
 * without ever making it give way, for as long as the vacuum runs (minutes on a large table).
 * When a plain autovacuum is in the way and nobody counts as a blocker, the attempt waits just
 * past deadlock_timeout instead; readers queue behind it that long at most, once.
 * ("The autovacuum daemon ... will cancel itself if a conflicting lock request is made",
 * https://www.postgresql.org/docs/current/routine-vacuuming.html#AUTOVACUUM)
 */
export function attemptLockTimeoutMs(
  verdict: LockVerdict,
  blockers: readonly Blocker[],
  policy: Pick<GatePolicy, 'lockTimeoutMs' | 'deadlockTimeoutMs'>,
): number {
  const autovacuumInTheWay =
    blockers.length === 0 &&
    verdict.ignored.some((holder) => holder.reason === 'autovacuum gives way');
  if (!autovacuumInTheWay) return policy.lockTimeoutMs;
  return Math.min(
    60_000,
    Math.max(policy.lockTimeoutMs, policy.deadlockTimeoutMs + AUTOVACUUM_MARGIN_MS),
  );
}

/**
 * Delay before the next attempt after a busy one: exponential from FIRST_RETRY_DELAY_MS,
 * capped at the poll interval, with full jitter so that retries do not fall into step with a
 * periodic reader.
 */
export function retryDelayMs(
  busyAttempts: number,
  pollIntervalSeconds: number,
  random: number,
): number {
  const ceiling = Math.min(
    pollIntervalSeconds * 1000,
    FIRST_RETRY_DELAY_MS * 2 ** Math.min(busyAttempts, 16),
  );
  return Math.round(random * ceiling);
}

/**
 * The history after a busy attempt: `verdict` is the inspection made right after it, so its
 * conflicting holders are the ones that outlasted our lock_timeout; `waitedOn` are the sessions
 * the attempt was seen waiting for while it waited (sessionsBlocking), which include holders of
 * row locks that no table lock shows. `random` in [0, 1) draws the backoff's jitter.
 */
export function recordBusyAttempt(
  history: GateHistory,
  verdict: LockVerdict,
  atSeconds: number,
  pollIntervalSeconds: number,
  random: number,
  waitedOn: readonly Pick<LockHolder, 'pid' | 'subcluster'>[] = [],
): GateHistory {
  const sessions = new Set([
    ...conflictingHolders(verdict).map(({ holder }) => sessionKey(holder)),
    ...waitedOn.flatMap(({ pid, subcluster }) =>
      pid === null ? [] : [sessionKey({ pid, gid: null, subcluster })],
    ),
  ]);
  const counts = new Map<string, number>();
  // The sessions seen now come first, so that among equal counts the oldest ones are dropped.
  for (const session of sessions) counts.set(session, 1);
  for (const { session, count } of history.collisions) {
    counts.set(session, count + (counts.get(session) ?? 0));
  }
  return {
    ...history,
    busyAttempts: history.busyAttempts + 1,
    lastBusyAtSeconds: atSeconds,
    retryAfterMs: retryDelayMs(history.busyAttempts, pollIntervalSeconds, random),
    collisions: [...counts]
      .map(([session, count]) => ({ session, count }))
      .sort((a, b) => b.count - a.count)
      .slice(0, REMEMBERED_SESSIONS),
  };
}

/** The history after the blocking sessions were ended. */
export function recordBlockersEnded(history: GateHistory, atSeconds: number): GateHistory {
  return {
    ...history,
    blockersEndedAtSeconds: atSeconds,
    terminationRounds: (history.terminationRounds ?? 0) + 1,
  };
}
