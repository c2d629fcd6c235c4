/**
 * A `$.locks` as "Check locks on the live tables" writes it, for the tests of what reads it
 * (the lock steps' parse, `trigger --follow`).
 */

export const GATE_HISTORY = {
  busyAttempts: 1,
  lastBusyAtSeconds: 2.5,
  retryAfterMs: 50,
  collisions: [{ session: '123', count: 1 }],
  blockersEndedAtSeconds: null,
};

/** A wait with no blocker left. */
export const LOCK_CHECK = {
  decision: 'wait',
  firstCheckAt: 1_764_000_000_000,
  waitedSeconds: 3,
  checks: 2,
  blockers: [],
  blockersSeen: [],
  history: GATE_HISTORY,
};

/** A blocker as recorded before the per-class policy: no blockerClass, no atMaxWait. */
export const BLOCKER_BEFORE_POLICY = {
  pid: 4242,
  user: 'alice',
  application: 'psql',
  clientAddr: null,
  state: 'idle in transaction',
  relation: 'public.orders',
  mode: 'AccessShareLock',
  transactionSeconds: 47,
  query: 'SELECT 1',
  reason: 'an open transaction holds the table',
};
