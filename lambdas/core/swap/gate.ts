/**
 * The lock gate's loop for callers that wait in one process: the local run, the rollback
 * command, the tests and the benchmark. It inspects the locks, asks `gateDecision` what to do,
 * does it, and looks again; the state machine's steps (pipeline/steps/locks.ts) drive the same
 * decision as states.
 */
import { inspectLocks, type LockTarget } from '../locks/inspect';
import { detectLockViews, type LockViews } from '../locks/limitless';
import { type TerminatedSession, terminateBlockingSessions } from '../locks/terminate';
import { type Blocker, formatSeconds, lockVerdict } from '../locks/verdict';
import { type BlockingSession, sessionsBlocking } from '../locks/waiting';
import type { SqlClient } from '../sql-client';
import { attemptSwap, type FollowCutOff, type SwapAttempt, type SwapResult } from './engine';
import {
  gateDecision,
  NO_HISTORY,
  recordBlockersEnded,
  recordBusyAttempt,
  sessionKey,
} from './gate-decision';
import type { SwapPlan } from './plan';
import { DEFAULT_WAIT_POLICY, LockWaitTimeoutError, type WaitPolicy } from './policy';

/**
 * The relations a plan locks, in the modes it takes (see swap_locks in ../schema/swap.ts):
 * staging and the sequences it owns; live; with rename, the views on live and the sequences
 * live owns. Views and sequences are checked in their table's mode, which STRATEGY_LOCKS
 * gives them wherever they are locked at all.
 */
export function lockTargets(plan: SwapPlan): LockTarget[] {
  return plan.tables.flatMap((table): LockTarget[] => [
    {
      relation: table.staging,
      mode: table.stagingLock,
      includeDependentViews: false,
      includeOwnedSequences: true,
    },
    // A partitioned table none of whose partitions changed is not locked: nobody blocks it.
    ...(table.liveLock === null
      ? []
      : [
          {
            relation: table.live,
            mode: table.liveLock,
            includeDependentViews: table.viewLock !== null,
            includeOwnedSequences: table.liveSequenceLock !== null,
          },
        ]),
    // Only the changed partitions: a reader holding an unchanged one never holds the run up.
    ...(table.partitions ?? []).flatMap((planned): LockTarget[] => [
      {
        relation: planned.replacement,
        mode: 'AccessExclusiveLock',
        includeDependentViews: false,
        includeOwnedSequences: true,
      },
      {
        relation: planned.partition,
        mode: 'AccessExclusiveLock',
        includeDependentViews: true,
        includeOwnedSequences: true,
      },
    ]),
  ]);
}

/** The server's deadlock_timeout in ms: how long a lock request waits before autovacuum gives way. */
export async function deadlockTimeoutMs(db: SqlClient): Promise<number> {
  const [row] = await db.query<{ ms: number }>(
    `SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::int AS ms`,
  );
  return row!.ms;
}

/**
 * Notes for the sessions a termination left alive, e.g. a prepared transaction and how to end
 * it, for the ones still among `blockers`.
 */
export function survivorNotes(
  records: readonly TerminatedSession[],
  blockers: readonly Blocker[],
): string[] {
  const still = new Set(blockers.map(({ holder }) => sessionKey(holder)));
  return records
    .filter((record) => record.outcome === 'refused' && still.has(sessionKey(record)))
    .map(
      (record) =>
        `${record.pid === null ? `prepared transaction ${record.gid}` : `pid ${record.pid}`} was not terminated: ${record.reason}${record.advice ? `; ${record.advice}` : ''}`,
    );
}

/** One attempt, and the sessions it was seen waiting for while it waited. */
export interface WatchedAttempt {
  readonly attempt: SwapAttempt;
  /** Empty unless the attempt was busy. */
  readonly waitedOn: readonly BlockingSession[];
}

/**
 * One swap attempt, watched: half-way through its lock_timeout a second call asks
 * pg_blocking_pids whom it waits for (`sessionsBlocking`). That is the only way to see a merge
 * waiting on a row lock, which no table lock shows, and it names whom a busy attempt was stuck
 * behind. Over the RDS Data API or a pool the two calls run side by side; over one
 * node-postgres connection the second queues behind the attempt and finds nobody waiting.
 */
export async function watchedAttempt(
  db: SqlClient,
  plan: SwapPlan,
  lockTimeoutMs: number,
  sleep: (ms: number) => Promise<void>,
  follow?: FollowCutOff,
  /** Which views show the locks (detectLockViews); asked at each watch when not given. */
  views?: LockViews,
): Promise<WatchedAttempt> {
  let settled = false;
  const attempt = attemptSwap(db, { ...plan, lockTimeoutMs }, follow).finally(() => {
    settled = true;
  });
  const watch = (async () => {
    await sleep(lockTimeoutMs / 2);
    if (settled) return [];
    // A failed look must not turn a busy attempt into an error: it only names people.
    return sessionsBlocking(db, lockTargets(plan), views).catch(() => []);
  })();
  const [outcome, waitedOn] = await Promise.all([attempt, watch]);
  return { attempt: outcome, waitedOn: outcome.status === 'busy' ? waitedOn : [] };
}

/** e.g. `pid 4242 (user alice, application "psql"), in a transaction open for 1.2 s: "UPDATE ..."` */
export function describeWaitedOn(sessions: readonly BlockingSession[]): string {
  return sessions
    .map((session) => {
      const who = [`user ${session.user ?? 'unknown'}`];
      if (session.applicationName)
        who.push(`application ${JSON.stringify(session.applicationName)}`);
      const query = session.query
        ? `: ${JSON.stringify(session.query.replace(/\s+/g, ' ').slice(0, 200))}`
        : '';
      const node = session.subcluster
        ? ` on subcluster ${session.subcluster.id}${session.subcluster.type ? ` (${session.subcluster.type})` : ''}`
        : '';
      const name = session.pid === null ? 'a prepared transaction' : `pid ${session.pid}${node}`;
      return `${name} (${who.join(', ')}), in a transaction open for ${formatSeconds(session.transactionAgeSeconds)}${query}`;
    })
    .join('; ');
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

/**
 * Swaps `plan` once the gate allows it; throws LockWaitTimeoutError when the gate gives up.
 * Ends within maxWaitSeconds plus at most MAX_TERMINATION_ROUNDS rounds of ending sessions and
 * attempting.
 */
export async function swapWhenSafe(
  db: SqlClient,
  plan: SwapPlan,
  policy: WaitPolicy = {},
  hooks: {
    readonly onProgress?: (progress: SwapProgress) => void;
    readonly sleep?: (ms: number) => Promise<void>;
    readonly now?: () => number;
    readonly random?: () => number;
  } = {},
): Promise<SwapOutcome> {
  const settings = { ...DEFAULT_WAIT_POLICY, ...policy };
  const sleep =
    hooks.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const now = hooks.now ?? Date.now;
  const random = hooks.random ?? Math.random;
  const started = now();
  const waited = () => (now() - started) / 1000;
  const gatePolicy = {
    ...settings,
    lockTimeoutMs: plan.lockTimeoutMs,
    deadlockTimeoutMs: await deadlockTimeoutMs(db),
  };
  const targets = lockTargets(plan);
  // Asked once: whether the cluster is Aurora Limitless does not change while we wait.
  const views = await detectLockViews(db);
  const observe = async () => ({
    verdict: lockVerdict(await inspectLocks(db, targets, views), {
      graceSeconds: settings.graceSeconds,
    }),
    waitedSeconds: waited(),
  });
  const blockersSeen = new Map<string, Blocker>();
  const terminated: TerminatedSession[] = [];
  let history = NO_HISTORY;
  let attempts = 0;
  let observation = await observe();
  for (;;) {
    const decision = gateDecision(observation, gatePolicy, history);
    const blockers = decision.action === 'attempt' ? [] : decision.blockers;
    for (const blocker of blockers) {
      const session = sessionKey(blocker.holder);
      if (!blockersSeen.has(session)) blockersSeen.set(session, blocker);
    }
    switch (decision.action) {
      case 'give up':
        throw new LockWaitTimeoutError(observation.waitedSeconds, decision.blockers, [
          ...decision.notes,
          ...survivorNotes(terminated, decision.blockers),
        ]);
      case 'wait':
        if (decision.why === 'blocked') {
          hooks.onProgress?.({
            kind: 'waiting',
            waitedSeconds: observation.waitedSeconds,
            blockers,
          });
        }
        await sleep(decision.waitMs);
        observation = await observe();
        break;
      case 'end blockers': {
        // The decision already judged them; grace 0 lets terminateBlockingSessions end the young
        // holders that kept colliding with our attempts.
        const records = await terminateBlockingSessions(db, decision.blockers, {
          graceSeconds: 0,
          ownApplicationPrefix: settings.ownApplicationPrefix,
        });
        terminated.push(...records);
        hooks.onProgress?.({
          kind: 'terminated',
          waitedSeconds: observation.waitedSeconds,
          terminated: records,
        });
        history = recordBlockersEnded(history, waited());
        observation = await observe();
        break;
      }
      case 'attempt': {
        attempts += 1;
        const { attempt, waitedOn } = await watchedAttempt(
          db,
          plan,
          decision.lockTimeoutMs,
          sleep,
          undefined,
          views,
        );
        if (attempt.status === 'swapped') {
          return {
            result: attempt.result,
            waitedSeconds: waited(),
            attempts,
            blockersSeen: [...blockersSeen.values()],
            terminated,
          };
        }
        hooks.onProgress?.({
          kind: 'busy',
          waitedSeconds: waited(),
          message: `${attempt.reason}: ${attempt.message}${waitedOn.length > 0 ? `; it waited for ${describeWaitedOn(waitedOn)}` : ''}`,
        });
        // Who still holds a conflicting lock right after the timeout is who outlasted it.
        observation = await observe();
        history = recordBusyAttempt(
          history,
          observation.verdict,
          observation.waitedSeconds,
          settings.pollIntervalSeconds,
          random(),
          waitedOn,
        );
        break;
      }
    }
  }
}
