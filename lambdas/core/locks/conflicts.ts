/**
 * PostgreSQL's table-level lock conflicts, as documented in "Conflicting Lock Modes"
 * (https://www.postgresql.org/docs/current/explicit-locking.html, Table 13.2) and implemented
 * by `LockConflicts` in src/backend/storage/lmgr/lock.c. Pure: no I/O.
 */
import type { LockMode } from '../swap/types';

/** Every table-level lock mode, weakest first, as pg_locks.mode spells them. */
export const LOCK_MODES: readonly LockMode[] = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];

/** The modes each mode conflicts with. The relation is symmetric. */
const CONFLICTS_WITH: Readonly<Record<LockMode, ReadonlySet<LockMode>>> = {
  AccessShareLock: new Set(['AccessExclusiveLock']),
  RowShareLock: new Set(['ExclusiveLock', 'AccessExclusiveLock']),
  RowExclusiveLock: new Set([
    'ShareLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ]),
  ShareUpdateExclusiveLock: new Set([
    'ShareUpdateExclusiveLock',
    'ShareLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ]),
  ShareLock: new Set([
    'RowExclusiveLock',
    'ShareUpdateExclusiveLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ]),
  ShareRowExclusiveLock: new Set([
    'RowExclusiveLock',
    'ShareUpdateExclusiveLock',
    'ShareLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ]),
  ExclusiveLock: new Set([
    'RowShareLock',
    'RowExclusiveLock',
    'ShareUpdateExclusiveLock',
    'ShareLock',
    'ShareRowExclusiveLock',
    'ExclusiveLock',
    'AccessExclusiveLock',
  ]),
  AccessExclusiveLock: new Set(LOCK_MODES),
};

/** Whether a lock in mode `a` and a lock in mode `b` on the same table cannot be held at once by different transactions. */
export function conflicts(a: LockMode, b: LockMode): boolean {
  return CONFLICTS_WITH[a].has(b);
}

export function isLockMode(value: unknown): value is LockMode {
  return typeof value === 'string' && (LOCK_MODES as readonly string[]).includes(value);
}

/**
 * The weakest single mode that conflicts with everything any of `modes` conflicts with: what
 * to check for when one relation is needed in several modes. That is the strongest of them,
 * except that ShareLock does not conflict with itself, so ShareLock together with
 * RowExclusiveLock or ShareUpdateExclusiveLock (which do) needs ShareRowExclusiveLock.
 * `inspect.ts` does the same in SQL.
 */
export function combinedMode(modes: readonly LockMode[]): LockMode {
  if (modes.length === 0) throw new Error('combinedMode needs at least one lock mode');
  const needed = LOCK_MODES.filter((other) => modes.some((mode) => conflicts(mode, other)));
  return LOCK_MODES.find((candidate) => needed.every((other) => conflicts(candidate, other)))!;
}
