/**
 * The per-class onMaxWait, pure: how a holder is classed, what the policy does with each class,
 * and the gate's decision when blockers of different classes are there at maxWaitSeconds.
 */
import { describe, expect, it } from 'vitest';
import { blockerClass } from '../lambdas/core/locks/classes';
import type { LockHolder } from '../lambdas/core/locks/inspect';
import { lockVerdict } from '../lambdas/core/locks/verdict';
import {
  atMaxWait,
  type GatePolicy,
  gateDecision,
  NO_HISTORY,
  recordBlockersEnded,
  recordBusyAttempt,
} from '../lambdas/core/swap/gate-decision';
import { maxWaitAction, mayTerminate } from '../lambdas/core/swap/policy';
import { holder } from './support/lock-holders';

const notebook = holder({ pid: 1001, applicationName: 'jupyter' });
const report = holder({
  pid: 1002,
  applicationName: 'bi',
  state: 'active',
  query: 'SELECT sum(x) FROM orders',
});
const prepared = holder({ pid: null, gid: 'tx1', state: 'prepared', backendType: null });
const wraparound = holder({
  pid: 1003,
  user: null,
  state: 'autovacuum',
  autovacuumWraparound: true,
  backendType: 'autovacuum worker',
  maintenanceCommand: 'VACUUM',
  mode: 'ShareUpdateExclusiveLock',
});
const index = holder({
  pid: 1004,
  state: 'active',
  maintenanceCommand: 'CREATE INDEX CONCURRENTLY',
  mode: 'ShareUpdateExclusiveLock',
});
const walsender = holder({ pid: 1005, backendType: 'walsender', state: 'active' });
const dump = holder({ pid: 1006, applicationName: 'pg_dump', state: 'active' });
const ours = holder({ pid: 1007, ownSession: true, state: 'active' });

const policy: GatePolicy = {
  graceSeconds: 2,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 60,
  onMaxWait: 'fail',
  lockTimeoutMs: 50,
  deadlockTimeoutMs: 1000,
};
const look = (holders: LockHolder[], waitedSeconds = 60) => ({
  verdict: lockVerdict(holders, { graceSeconds: 2 }),
  waitedSeconds,
});
const blockersOf = (...holders: LockHolder[]) =>
  holders.map((entry) => ({ holder: entry, reason: 'r' }));

describe('blockerClass', () => {
  it('reads the class from what the lock query reports, never from query text', () => {
    expect(blockerClass(notebook)).toBe('idleInTransaction');
    expect(blockerClass({ ...notebook, state: 'idle in transaction (aborted)' })).toBe(
      'idleInTransaction',
    );
    expect(blockerClass(report)).toBe('activeQuery');
    expect(blockerClass({ ...report, state: 'other' })).toBe('activeQuery');
    expect(blockerClass({ ...report, query: 'CREATE INDEX ON orders (id)' })).toBe('activeQuery');
    expect(blockerClass(prepared)).toBe('preparedTransaction');
    expect(blockerClass(wraparound)).toBe('antiWraparoundVacuum');
    expect(blockerClass({ ...wraparound, autovacuumWraparound: false })).toBe('maintenance');
    expect(blockerClass(index)).toBe('maintenance');
    expect(blockerClass(walsender)).toBe('replicationOrBackup');
    expect(blockerClass({ ...walsender, state: 'idle in transaction' })).toBe(
      'replicationOrBackup',
    );
    expect(blockerClass(dump)).toBe('replicationOrBackup');
    expect(blockerClass({ ...dump, applicationName: 'pg_dumpall' })).toBe('replicationOrBackup');
    expect(blockerClass({ ...dump, applicationName: 'my pg_dump wrapper' })).toBe('activeQuery');
  });

  it('starts each blocker sentence with the class', () => {
    const verdict = lockVerdict([notebook, report, prepared, index, walsender], {
      graceSeconds: 2,
    });
    expect(verdict.safe).toBe(false);
    const reasons = verdict.safe ? [] : verdict.blockers.map((blocker) => blocker.reason);
    expect(reasons.map((reason) => reason.split(':')[0])).toEqual([
      'idleInTransaction',
      'activeQuery',
      'preparedTransaction',
      'maintenance',
      'replicationOrBackup',
    ]);
    expect(reasons[3]).toContain('running CREATE INDEX CONCURRENTLY');
    expect(reasons[4]).toContain('on a replication connection');
  });
});

describe('maxWaitAction', () => {
  it('applies the string to every class that can be ended, as before', () => {
    for (const entry of [notebook, report, index, walsender, dump]) {
      expect(maxWaitAction(entry, 'terminate').action).toBe('terminate');
      expect(maxWaitAction(entry, 'fail').action).toBe('fail');
      expect(maxWaitAction(entry, undefined).action).toBe('fail');
    }
  });

  it('fails a class the object leaves out, and those never terminated whatever is asked', () => {
    const perClass = { idleInTransaction: 'terminate', activeQuery: 'fail' } as const;
    expect(maxWaitAction(notebook, perClass)).toEqual({
      blockerClass: 'idleInTransaction',
      action: 'terminate',
      exception: null,
    });
    expect(maxWaitAction(report, perClass).action).toBe('fail');
    expect(maxWaitAction(index, perClass).action).toBe('fail');
    expect(maxWaitAction(prepared, 'terminate')).toEqual({
      blockerClass: 'preparedTransaction',
      action: 'fail',
      exception: 'preparedTransaction is never terminated',
    });
    expect(maxWaitAction(wraparound, 'terminate').action).toBe('fail');
    expect(maxWaitAction(ours, 'terminate')).toEqual({
      blockerClass: 'activeQuery',
      action: 'fail',
      exception: "the pipeline's own sessions are never terminated",
    });
  });

  it('says whether a setting may terminate anything, which needs pg_signal_backend', () => {
    expect(mayTerminate('terminate')).toBe(true);
    expect(mayTerminate('fail')).toBe(false);
    expect(mayTerminate(undefined)).toBe(false);
    expect(mayTerminate({ activeQuery: 'fail' })).toBe(false);
    expect(mayTerminate({ idleInTransaction: 'terminate' })).toBe(true);
  });
});

describe('the gate at maxWaitSeconds, with blockers of several classes', () => {
  const perClass = {
    ...policy,
    onMaxWait: { idleInTransaction: 'terminate', activeQuery: 'fail' },
  } as const;

  it('ends them when the policy ends every one', () => {
    expect(gateDecision(look([notebook]), perClass, NO_HISTORY)).toMatchObject({
      action: 'end blockers',
      blockers: [{ holder: { pid: 1001 } }],
    });
  });

  it('ends nobody when the policy fails one of them, naming who failed the run and who was spared', () => {
    const decision = gateDecision(look([notebook, report]), perClass, NO_HISTORY);
    expect(decision).toEqual({
      action: 'give up',
      blockers: [
        expect.objectContaining({ holder: notebook }),
        expect.objectContaining({ holder: report }),
      ],
      notes: [
        'nobody was terminated: onMaxWait fails the run for pid 1002 (activeQuery), so ending pid 1001 (idleInTransaction) would not have let the swap through',
      ],
    });
  });

  it('ends nobody for a run that cannot succeed, with the single "terminate" too', () => {
    const terminate = { ...policy, onMaxWait: 'terminate' } as const;
    expect(gateDecision(look([notebook, prepared]), terminate, NO_HISTORY)).toMatchObject({
      action: 'give up',
      notes: [
        'nobody was terminated: onMaxWait fails the run for prepared transaction tx1 (preparedTransaction: preparedTransaction is never terminated), so ending pid 1001 (idleInTransaction) would not have let the swap through',
      ],
    });
    expect(gateDecision(look([wraparound, ours]), terminate, NO_HISTORY)).toMatchObject({
      action: 'give up',
      notes: [],
    });
  });

  it('gives up without more terminations when a blocker the policy fails appears after a round', () => {
    const ended = recordBlockersEnded(NO_HISTORY, 60);
    expect(gateDecision(look([report], 61), perClass, ended)).toMatchObject({
      action: 'give up',
      blockers: [{ holder: { pid: 1002 } }],
      notes: [],
    });
    expect(gateDecision(look([notebook], 61), perClass, ended)).toMatchObject({
      action: 'end blockers',
    });
  });

  it('names a session once however many relations it blocks on', () => {
    const onView = { ...notebook, relation: { schema: 'public', name: 'orders_view' } };
    expect(atMaxWait(blockersOf(notebook, onView, report), perClass.onMaxWait)).toMatchObject({
      action: 'give up',
      notes: [
        'nobody was terminated: onMaxWait fails the run for pid 1002 (activeQuery), so ending pid 1001 (idleInTransaction) would not have let the swap through',
      ],
    });
  });

  it('past maxWaitSeconds with a busy attempt and nobody in sight, fails with "fail" and goes on with a policy that ends sessions', () => {
    const busyThere = recordBusyAttempt(
      NO_HISTORY,
      lockVerdict([], { graceSeconds: 2 }),
      60.5,
      1,
      0,
    );
    expect(gateDecision(look([], 61), policy, busyThere)).toEqual({
      action: 'give up',
      blockers: [],
      notes: [],
    });
    expect(
      gateDecision(look([], 61), { ...policy, onMaxWait: { activeQuery: 'fail' } }, busyThere),
    ).toMatchObject({
      action: 'give up',
    });
    expect(gateDecision(look([], 61), perClass, busyThere)).toEqual({
      action: 'end blockers',
      blockers: [],
    });
    expect(gateDecision(look([], 61), { ...policy, onMaxWait: 'terminate' }, busyThere)).toEqual({
      action: 'end blockers',
      blockers: [],
    });
  });

  it('is unchanged with "fail" for everyone: no note, every blocker named', () => {
    expect(gateDecision(look([notebook, report]), policy, NO_HISTORY)).toEqual({
      action: 'give up',
      blockers: [
        expect.objectContaining({ holder: notebook }),
        expect.objectContaining({ holder: report }),
      ],
      notes: [],
    });
  });
});
