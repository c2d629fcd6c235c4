/**
 * "Check locks on the live tables", "Terminate the sessions blocking the swap" and "Swap staging
 * into live": the lock gate cut into steps the state machine can wait between. Each step
 * inspects the locks and asks the same `gateDecision` as every other caller, with the gate's
 * history (busy attempts, sessions that collided with them, whether blockers were ended)
 * carried in the state. The check polls inside the Lambda for a while, so a released lock is
 * noticed within about pollIntervalSeconds without paying a state transition per poll.
 */
import { inspectLocks, type LockTarget } from '../../core/locks/inspect';
import { detectLockViews } from '../../core/locks/limitless';
import { terminateBlockingSessions } from '../../core/locks/terminate';
import { lockVerdict } from '../../core/locks/verdict';
import {
  deadlockTimeoutMs,
  describeWaitedOn,
  lockTargets,
  survivorNotes,
  watchedAttempt,
} from '../../core/swap/gate';
import {
  type GateAction,
  type GateHistory,
  type GateObservation,
  type GatePolicy,
  gateDecision,
  NO_HISTORY,
  recordBlockersEnded,
  recordBusyAttempt,
} from '../../core/swap/gate-decision';
import type { SwapPlan } from '../../core/swap/plan';
import { DEFAULT_WAIT_POLICY, LockWaitTimeoutError } from '../../core/swap/policy';
import { preflight } from '../../core/swap/preflight';
import type { PipelineDeps } from '../deps';
import { applyIncrementMismatch, publishedRows } from '../increment-mismatch';
import { replacedPartitions } from '../replaced-partitions';
import { loadRun, preflightTable, type RunContext, runSwapPlan } from '../run-context';
import {
  type BlockerState,
  blockerLine,
  describeBlocker,
  endedSession,
  type LocksState,
  parseStepInput,
  STATE_SESSIONS,
  STEP_INPUTS,
  type StepInput,
  type SwapState,
  stateQuery,
  type TerminatedState,
} from '../state';

/** How long one check polls before handing back to the state machine's Wait state. */
export const LOCK_CHECK_BUDGET_SECONDS = 50;
/**
 * How long "Swap staging into live" may follow a truncate or merge swap that outlasted the
 * Data API's 45 s call: its function times out at 15 minutes.
 */
export const SWAP_FOLLOW_BUDGET_MS = 13 * 60_000;

/** Quick attempts one swap step makes before going back to waiting. */
export const SWAP_ATTEMPTS_PER_STEP = 3;

type GateInput = StepInput<'gate'>;

/**
 * The gate's newest history: each step that changes it writes it to its own result path
 * ($.locks, $.swap, $.terminated), and a history only grows, so the newest is the furthest on.
 */
function latestHistory(state: GateInput): GateHistory {
  const swap = state.swap?.swapped === false ? state.swap : undefined;
  const candidates = [state.locks?.history, swap?.history, state.terminated?.history].filter(
    (history): history is GateHistory => Boolean(history),
  );
  return candidates.reduce(
    (newest, history) =>
      history.busyAttempts > newest.busyAttempts ||
      (history.busyAttempts === newest.busyAttempts &&
        terminationRounds(history) > terminationRounds(newest))
        ? history
        : newest,
    NO_HISTORY,
  );
}

/** Histories written before rounds were counted record one termination at most. */
function terminationRounds(history: GateHistory): number {
  return history.terminationRounds ?? (history.blockersEndedAtSeconds === null ? 0 : 1);
}

/** One step's view of the gate: the run's plan, its policy and a way to look at the locks. */
async function openGate(
  deps: PipelineDeps,
  context: RunContext,
  plan: SwapPlan,
  firstCheckAt: number,
) {
  const targets: readonly LockTarget[] = lockTargets(plan);
  const policy: GatePolicy = {
    graceSeconds: context.config.locks.graceSeconds,
    pollIntervalSeconds: context.run.pollIntervalSeconds,
    maxWaitSeconds: context.run.maxWaitSeconds,
    onMaxWait: context.config.locks.onMaxWait,
    lockTimeoutMs: plan.lockTimeoutMs,
    deadlockTimeoutMs: await deadlockTimeoutMs(deps.aurora),
  };
  // Asked once per step: whether the cluster is Aurora Limitless does not change meanwhile.
  const views = await detectLockViews(deps.aurora);
  const observe = async (): Promise<GateObservation> => ({
    verdict: lockVerdict(await inspectLocks(deps.aurora, targets, views), {
      graceSeconds: policy.graceSeconds,
    }),
    waitedSeconds: (deps.now() - firstCheckAt) / 1000,
  });
  return { policy, observe, views };
}

function giveUp(
  state: GateInput,
  decision: Extract<GateAction, { action: 'give up' }>,
  waitedSeconds: number,
): LockWaitTimeoutError {
  return new LockWaitTimeoutError(waitedSeconds, decision.blockers, [
    ...decision.notes,
    ...survivorNotes(state.terminated?.terminated ?? [], decision.blockers),
  ]);
}

/** The blockers seen so far and the new ones, each once, at most STATE_SESSIONS of them. */
export function mergeSeen(
  seen: readonly BlockerState[],
  blockers: readonly BlockerState[],
): BlockerState[] {
  const merged = [...seen];
  for (const blocker of blockers) {
    if (merged.length >= STATE_SESSIONS) break;
    // On Aurora Limitless a pid is unique on its subcluster only.
    const same = (known: BlockerState) =>
      known.pid === blocker.pid &&
      known.relation === blocker.relation &&
      known.subcluster?.id === blocker.subcluster?.id;
    if (!merged.some(same)) {
      merged.push(blocker);
    }
  }
  return merged;
}

export async function checkLocks(input: unknown, deps: PipelineDeps): Promise<LocksState> {
  const state = parseStepInput(STEP_INPUTS.gate, input);
  const context = await loadRun(deps, state.run);
  const previous = state.locks;
  const stepStarted = deps.now();
  const record = await context.files.readUnload();
  if (!previous) {
    // First look: everything that would make the swap fail is reported before any waiting.
    await preflight(
      deps.aurora,
      record.transfers.map((transfer) =>
        preflightTable(transfer.table, transfer.staging, transfer.delta !== undefined),
      ),
      { withStaging: true, onMaxWait: context.config.locks.onMaxWait },
    );
  }
  const firstCheckAt = previous?.firstCheckAt ?? stepStarted;
  const history = latestHistory(state);
  let seen = previous?.blockersSeen ?? [];
  let checks = previous?.checks ?? 0;
  // The plan (run files, merge keys) is fixed for the run: read it once, not on every poll.
  const gate = await openGate(
    deps,
    context,
    await runSwapPlan(deps, context, record),
    firstCheckAt,
  );
  for (;;) {
    const observation = await gate.observe();
    checks += 1;
    const decision = gateDecision(observation, gate.policy, history);
    const blockers = decision.action === 'attempt' ? [] : decision.blockers;
    const described = blockers.map((blocker) =>
      describeBlocker(blocker.holder, blocker.reason, gate.policy.onMaxWait ?? 'fail'),
    );
    seen = mergeSeen(seen, described);
    const { waitedSeconds } = observation;
    const result = (kind: LocksState['decision']): LocksState => ({
      decision: kind,
      firstCheckAt,
      waitedSeconds,
      checks,
      blockers: described.slice(0, STATE_SESSIONS),
      blockersSeen: seen,
      history,
    });
    if (decision.action === 'give up') throw giveUp(state, decision, waitedSeconds);
    if (decision.action === 'attempt') return result('swap');
    if (decision.action === 'end blockers') return result('terminate');
    if (decision.why === 'blocked' && checks === (previous?.checks ?? 0) + 1) {
      deps.log.info('waiting for sessions that hold conflicting locks', {
        waitedSeconds: Math.round(waitedSeconds),
        blockers: described.map(blockerLine),
      });
    }
    if (deps.now() - stepStarted + decision.waitMs > LOCK_CHECK_BUDGET_SECONDS * 1000) {
      return result('wait');
    }
    await deps.sleep(decision.waitMs);
  }
}

export async function terminateBlockers(
  input: unknown,
  deps: PipelineDeps,
): Promise<TerminatedState> {
  const state = parseStepInput(STEP_INPUTS.gate, input);
  const context = await loadRun(deps, state.run);
  const firstCheckAt = state.locks?.firstCheckAt ?? deps.now();
  const history = latestHistory(state);
  const plan = await runSwapPlan(deps, context, await context.files.readUnload());
  const gate = await openGate(deps, context, plan, firstCheckAt);
  const observation = await gate.observe();
  const decision = gateDecision(observation, gate.policy, history);
  if (decision.action === 'give up') throw giveUp(state, decision, observation.waitedSeconds);
  // Nobody to end any more (they finished since the check): the swap step decides afresh.
  const endedBefore = state.terminated?.ended ?? [];
  if (decision.action !== 'end blockers') return { terminated: [], ended: endedBefore, history };
  // The decision already judged them; grace 0 lets terminateBlockingSessions end the young holders
  // that kept colliding with our attempts.
  const records = await terminateBlockingSessions(deps.aurora, decision.blockers, {
    graceSeconds: 0,
    ownApplicationPrefix: DEFAULT_WAIT_POLICY.ownApplicationPrefix,
  });
  for (const record of records) {
    const message = {
      terminated: 'terminated a blocking session',
      ended: 'a blocking session ended by itself before it was terminated',
      refused: 'could not terminate a blocking session',
    }[record.outcome];
    deps.log.warn(message, {
      pid: record.pid,
      blockerClass: record.blockerClass,
      user: record.user,
      application: record.applicationName,
      transactionSeconds: record.transactionAgeSeconds,
      query: record.query,
      reason: record.reason,
    });
  }
  deps.metrics.record('SessionsTerminated', 'Count', records.filter((r) => r.terminated).length);
  return {
    terminated: records
      .slice(0, STATE_SESSIONS)
      .map((record) => ({ ...record, query: stateQuery(record.query) })),
    // Short records (no query), so four times as many fit.
    ended: [...endedBefore, ...records.map(endedSession)].slice(0, 4 * STATE_SESSIONS),
    history: recordBlockersEnded(history, (deps.now() - firstCheckAt) / 1000),
  };
}

export async function swapTables(input: unknown, deps: PipelineDeps): Promise<SwapState> {
  const state = parseStepInput(STEP_INPUTS.gate, input);
  const context = await loadRun(deps, state.run);
  const firstCheckAt = state.locks?.firstCheckAt ?? deps.now();
  let history = latestHistory(state);
  const plan = await runSwapPlan(deps, context, await context.files.readUnload());
  const gate = await openGate(deps, context, plan, firstCheckAt);
  // A truncate or merge swap cut off by the Data API is followed until it commits or ends,
  // within the function's 15 minutes (lib/function-access.ts).
  const follow = {
    deadline: deps.now() + SWAP_FOLLOW_BUDGET_MS,
    pollIntervalMs: 5_000,
    sleep: deps.sleep,
    now: deps.now,
  };
  let attempts = 0;
  let reason = '';
  const notNow = (why: string): SwapState => ({
    swapped: false,
    attempts,
    reason: reason || why,
    history,
  });
  for (;;) {
    const observation = await gate.observe();
    const decision = gateDecision(observation, gate.policy, history);
    if (decision.action === 'give up') throw giveUp(state, decision, observation.waitedSeconds);
    if (decision.action === 'end blockers') return notNow('blocking sessions are to be ended');
    if (decision.action === 'wait') {
      // Long blockers are waited for by the check and the Wait state; only the short pause
      // after a busy attempt is spent here.
      if (decision.why === 'blocked') return notNow('blockers hold conflicting locks');
      if (attempts >= SWAP_ATTEMPTS_PER_STEP) return notNow('busy');
      await deps.sleep(decision.waitMs);
      continue;
    }
    if (attempts >= SWAP_ATTEMPTS_PER_STEP) return notNow('busy');
    attempts += 1;
    if (decision.lockTimeoutMs !== plan.lockTimeoutMs) {
      deps.log.info(
        'a plain autovacuum is in the way: waiting past deadlock_timeout so it gives way',
        { lockTimeoutMs: decision.lockTimeoutMs },
      );
    }
    const { attempt: outcome, waitedOn } = await watchedAttempt(
      deps.aurora,
      plan,
      decision.lockTimeoutMs,
      deps.sleep,
      follow,
      gate.views,
    ).catch((error: unknown) => applyIncrementMismatch(deps.aurora, deps.log, plan, error));
    if (outcome.status === 'swapped') {
      deps.metrics.record('SwapLockHeld', 'Milliseconds', outcome.result.lockHeldMs);
      deps.log.info('swapped', {
        tables: context.run.targets,
        attempt: attempts,
        lockWaitMs: outcome.result.lockWaitMs,
        lockHeldMs: outcome.result.lockHeldMs,
      });
      return {
        swapped: true,
        attempts,
        lockWaitMs: outcome.result.lockWaitMs,
        lockHeldMs: outcome.result.lockHeldMs,
        swappedAt: new Date(deps.now()).toISOString(),
        published: publishedRows(outcome.result),
        replaced: replacedPartitions(outcome.result),
      };
    }
    reason = `${outcome.reason}: ${outcome.message}${waitedOn.length > 0 ? `; it waited for ${describeWaitedOn(waitedOn)}` : ''}`;
    deps.log.info('swap attempt was busy; nothing changed', { attempt: attempts, reason });
    // Who still holds a conflicting lock right after the timeout is who outlasted it.
    const after = await gate.observe();
    history = recordBusyAttempt(
      history,
      after.verdict,
      after.waitedSeconds,
      gate.policy.pollIntervalSeconds ?? DEFAULT_WAIT_POLICY.pollIntervalSeconds,
      Math.random(),
      waitedOn,
    );
  }
}
