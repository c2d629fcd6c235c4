/**
 * The lock gate's decision, pure: every rule on hand-built lock holders and histories. Every
 * loop (the state machine's steps, swapWhenSafe, the rollback command) drives this function.
 */
import { describe, expect, it } from 'vitest';
import type { LockHolder } from '../lambdas/core/locks/inspect';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import {
  AUTOVACUUM_MARGIN_MS,
  COLLISIONS_BEFORE_BLOCKER,
  type GateHistory,
  type GatePolicy,
  gateDecision,
  MAX_TERMINATION_ROUNDS,
  NO_HISTORY,
  REMEMBERED_SESSIONS,
  recordBlockersEnded,
  recordBusyAttempt,
  retryDelayMs,
} from '../lambdas/core/swap/gate-decision';
import { holder } from './support/lock-holders';

const young = (pid = 5151) => holder({ pid, transactionAgeSeconds: 0.3, applicationName: 'loop' });
const autovacuum = holder({
  pid: 77,
  user: null,
  applicationName: null,
  clientAddr: null,
  state: 'autovacuum',
  mode: 'ShareUpdateExclusiveLock',
  transactionAgeSeconds: 600,
  query: 'autovacuum: VACUUM public.orders',
});

const policy: GatePolicy = {
  graceSeconds: 2,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 60,
  onMaxWait: 'fail',
  lockTimeoutMs: 50,
  deadlockTimeoutMs: 1000,
};

const look = (holders: LockHolder[], waitedSeconds: number) => ({
  verdict: lockVerdict(holders, { graceSeconds: 2 }),
  waitedSeconds,
});

/** The history after `n` busy attempts, each with `holders` still there right after it. */
function busy(n: number, holders: LockHolder[], from = NO_HISTORY, at = 1): GateHistory {
  let history = from;
  for (let i = 0; i < n; i += 1) {
    history = recordBusyAttempt(history, lockVerdict(holders, { graceSeconds: 2 }), at + i, 1, 0);
  }
  return history;
}

describe('gateDecision before maxWaitSeconds', () => {
  it('attempts at once, under lock_timeout, when nobody holds a conflicting lock or only young holders do', () => {
    expect(gateDecision(look([], 0), policy, NO_HISTORY)).toEqual({
      action: 'attempt',
      lockTimeoutMs: 50,
    });
    expect(gateDecision(look([young()], 0), policy, NO_HISTORY)).toEqual({
      action: 'attempt',
      lockTimeoutMs: 50,
    });
  });

  it('waits a poll interval for a long holder, naming it, and never past maxWaitSeconds', () => {
    const decision = gateDecision(look([holder()], 10), policy, NO_HISTORY);
    expect(decision).toMatchObject({ action: 'wait', why: 'blocked', waitMs: 1000 });
    expect(decision.action === 'wait' && decision.blockers[0]!.reason).toMatch(
      /^idleInTransaction: pid 4242 .* for 47 s in an open transaction/,
    );
    expect(gateDecision(look([holder()], 59.7), policy, NO_HISTORY)).toMatchObject({
      action: 'wait',
      waitMs: 300,
    });
  });

  it('after a busy attempt, pauses for the drawn backoff, then attempts again', () => {
    const history = recordBusyAttempt(NO_HISTORY, lockVerdict([]), 5, 1, 0.5);
    expect(history).toMatchObject({ busyAttempts: 1, lastBusyAtSeconds: 5, retryAfterMs: 25 });
    expect(gateDecision(look([], 5), policy, history)).toEqual({
      action: 'wait',
      why: 'backing off',
      waitMs: 25,
      blockers: [],
    });
    expect(gateDecision(look([], 5.01), policy, history)).toMatchObject({ waitMs: 15 });
    expect(gateDecision(look([], 5.03), policy, history)).toMatchObject({ action: 'attempt' });
  });

  it('backs off exponentially from 50 ms, capped at the poll interval, with full jitter', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => retryDelayMs(n, 1, 0.999999))).toEqual([
      50, 100, 200, 400, 800, 1000,
    ]);
    expect(retryDelayMs(40, 1, 0)).toBe(0);
    expect(retryDelayMs(2, 0.1, 0.5)).toBe(50);
  });
});

describe('young holders that keep colliding with attempts', () => {
  it(`count as blockers after ${COLLISIONS_BEFORE_BLOCKER} busy attempts, saying why`, () => {
    const loop = young();
    const twice = busy(COLLISIONS_BEFORE_BLOCKER - 1, [loop]);
    expect(gateDecision(look([loop], 10), policy, twice)).toMatchObject({ action: 'attempt' });
    const thrice = busy(1, [loop], twice, 3);
    expect(thrice.collisions).toEqual([{ session: 'pid 5151', count: 3 }]);
    const decision = gateDecision(look([loop], 10), policy, thrice);
    expect(decision).toMatchObject({ action: 'wait', why: 'blocked' });
    expect(decision.action === 'wait' && decision.blockers[0]!.reason).toMatch(
      /^idleInTransaction: pid 5151 .* for 0\.3 s .*\(each of its transactions is short, but it held the lock through 3 swap attempts\)$/,
    );
  });

  it('are not waited for while they hold nothing, and other young sessions are still not blockers', () => {
    const history = busy(COLLISIONS_BEFORE_BLOCKER, [young()]);
    expect(gateDecision(look([], 10), policy, history)).toMatchObject({ action: 'attempt' });
    expect(gateDecision(look([young(6000)], 10), policy, history)).toMatchObject({
      action: 'attempt',
    });
  });

  it('are named when maxWaitSeconds runs out with onMaxWait "fail"', () => {
    const history = busy(COLLISIONS_BEFORE_BLOCKER, [young()]);
    const decision = gateDecision(look([young()], 60), policy, history);
    expect(decision).toMatchObject({ action: 'give up', notes: [] });
    expect(decision.action === 'give up' && decision.blockers.map((b) => b.holder.pid)).toEqual([
      5151,
    ]);
  });

  it('are ended with onMaxWait "terminate", then an attempt is made; busy again, those in the way are ended, at most 3 rounds', () => {
    const terminate = { ...policy, onMaxWait: 'terminate' as const };
    const history = busy(COLLISIONS_BEFORE_BLOCKER, [young()]);
    expect(gateDecision(look([young()], 60), terminate, history)).toMatchObject({
      action: 'end blockers',
      blockers: [{ holder: { pid: 5151 } }],
    });
    const ended = recordBlockersEnded(history, 60.1);
    expect(gateDecision(look([], 60.2), terminate, ended)).toEqual({
      action: 'attempt',
      lockTimeoutMs: 50,
    });
    // A reader that was between two transactions when the others were ended collides next.
    // Each round a different young session collides (never often enough to count as a blocker).
    let rounds = busy(1, [young(6001)], ended, 60.3);
    for (let round = 2; round <= MAX_TERMINATION_ROUNDS; round += 1) {
      expect(gateDecision(look([young(6000 + round - 1)], 60.3), terminate, rounds)).toMatchObject({
        action: 'end blockers',
        blockers: [{ holder: { pid: 6000 + round - 1 } }],
      });
      rounds = busy(1, [young(6000 + round)], recordBlockersEnded(rounds, 60.4), 60.5);
    }
    const last = 6000 + MAX_TERMINATION_ROUNDS;
    expect(gateDecision(look([young(last)], 60.6), terminate, rounds)).toMatchObject({
      action: 'give up',
      blockers: [{ holder: { pid: last } }],
      notes: ['the attempt after ending the blocking sessions was still busy'],
    });
  });

  it('gives up when a blocker is still there after ending the blocking sessions 3 times', () => {
    const terminate = { ...policy, onMaxWait: 'terminate' as const };
    // e.g. a superuser's session, which pg_signal_backend may not end
    const survivor = holder({ user: 'postgres' });
    let ended = recordBlockersEnded(NO_HISTORY, 60);
    for (let round = 2; round <= MAX_TERMINATION_ROUNDS; round += 1) {
      expect(gateDecision(look([survivor], 61), terminate, ended)).toMatchObject({
        action: 'end blockers',
      });
      ended = recordBlockersEnded(ended, 61);
    }
    expect(gateDecision(look([survivor], 62), terminate, ended)).toMatchObject({
      action: 'give up',
      blockers: [{ holder: { pid: 4242 } }],
      notes: [
        `they were still there after ending the blocking sessions ${MAX_TERMINATION_ROUNDS} times`,
      ],
    });
  });

  it('remembers at most the sessions that collided most', () => {
    const many = Array.from({ length: REMEMBERED_SESSIONS + 10 }, (_, i) => young(10_000 + i));
    const history = busy(2, [young()], busy(1, many));
    expect(history.collisions).toHaveLength(REMEMBERED_SESSIONS);
    expect(history.collisions[0]).toEqual({ session: 'pid 5151', count: 2 });
  });
});

describe('gateDecision at maxWaitSeconds', () => {
  it('gives up naming long blockers with "fail", ends them with "terminate"', () => {
    expect(gateDecision(look([holder()], 60), policy, NO_HISTORY)).toMatchObject({
      action: 'give up',
      blockers: [{ holder: { pid: 4242 } }],
    });
    expect(
      gateDecision(look([holder()], 60), { ...policy, onMaxWait: 'terminate' }, NO_HISTORY),
    ).toMatchObject({ action: 'end blockers', blockers: [{ holder: { pid: 4242 } }] });
  });

  it('makes one last attempt when nobody blocks, and after a busy one there, stops: every loop ends', () => {
    expect(gateDecision(look([young()], 61), policy, NO_HISTORY)).toMatchObject({
      action: 'attempt',
    });
    // A different young session each time: nobody reaches the collision count.
    const history = busy(1, [young(9001)], NO_HISTORY, 61);
    const fail = gateDecision(look([young(9002)], 61.5), policy, history);
    expect(fail).toMatchObject({ action: 'give up', blockers: [{ holder: { pid: 9002 } }] });
    const terminate = gateDecision(
      look([young(9002)], 61.5),
      { ...policy, onMaxWait: 'terminate' },
      history,
    );
    expect(terminate).toMatchObject({
      action: 'end blockers',
      blockers: [{ holder: { pid: 9002 } }],
    });
    // Nobody to end: the loop still ends after one more attempt.
    const nobody = recordBlockersEnded(history, 61.6);
    expect(
      gateDecision(
        look([], 61.7),
        { ...policy, onMaxWait: 'terminate' },
        busy(1, [], nobody, 61.7),
      ),
    ).toMatchObject({ action: 'give up', blockers: [] });
  });

  it('with maxWaitSeconds 0, attempts once and gives up when that is busy', () => {
    const now = { ...policy, maxWaitSeconds: 0 };
    expect(gateDecision(look([young()], 0), now, NO_HISTORY)).toMatchObject({ action: 'attempt' });
    expect(
      gateDecision(look([young()], 0.1), now, busy(1, [young()], NO_HISTORY, 0.1)),
    ).toMatchObject({
      action: 'give up',
    });
  });
});

describe('the autovacuum rule', () => {
  it('waits just past deadlock_timeout when a plain autovacuum is the one in the way, so it gives way', () => {
    expect(gateDecision(look([autovacuum], 0), policy, NO_HISTORY)).toEqual({
      action: 'attempt',
      lockTimeoutMs: 1000 + AUTOVACUUM_MARGIN_MS,
    });
    // never shorter than configured, never past lock_timeout's 60 s bound
    expect(
      gateDecision(look([autovacuum], 0), { ...policy, lockTimeoutMs: 5000 }, NO_HISTORY),
    ).toMatchObject({ lockTimeoutMs: 5000 });
    expect(
      gateDecision(look([autovacuum], 0), { ...policy, deadlockTimeoutMs: 90_000 }, NO_HISTORY),
    ).toMatchObject({ lockTimeoutMs: 60_000 });
  });

  it('does not lengthen the wait while a real blocker is there too, nor for an anti-wraparound vacuum', () => {
    expect(gateDecision(look([autovacuum, holder()], 0), policy, NO_HISTORY)).toMatchObject({
      action: 'wait',
    });
    const wraparound = { ...autovacuum, autovacuumWraparound: true };
    expect(gateDecision(look([wraparound], 0), policy, NO_HISTORY)).toMatchObject({
      action: 'wait',
      blockers: [{ holder: { pid: 77 } }],
    });
    expect(gateDecision(look([autovacuum, young()], 0), policy, NO_HISTORY)).toEqual({
      action: 'attempt',
      lockTimeoutMs: 1000 + AUTOVACUUM_MARGIN_MS,
    });
  });
});
