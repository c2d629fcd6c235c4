import { describe, expect, it } from 'vitest';
import { combinedMode, conflicts, isLockMode, LOCK_MODES } from '../lambdas/core/locks/conflicts';
import type { LockMode } from '../lambdas/core/swap/types';

/**
 * Table 13.2 "Conflicting Lock Modes" of the PostgreSQL manual, copied by hand: one row per
 * requested mode, one column per existing mode, in the manual's order; X marks a conflict.
 */
const DOCUMENTED_ORDER: readonly LockMode[] = [
  'AccessShareLock',
  'RowShareLock',
  'RowExclusiveLock',
  'ShareUpdateExclusiveLock',
  'ShareLock',
  'ShareRowExclusiveLock',
  'ExclusiveLock',
  'AccessExclusiveLock',
];
const DOCUMENTED_TABLE = `
  ACCESS SHARE            . . . . . . . X
  ROW SHARE               . . . . . . X X
  ROW EXCLUSIVE           . . . . X X X X
  SHARE UPDATE EXCLUSIVE  . . . X X X X X
  SHARE                   . . X X . X X X
  SHARE ROW EXCLUSIVE     . . X X X X X X
  EXCLUSIVE               . X X X X X X X
  ACCESS EXCLUSIVE        X X X X X X X X
`;

function documentedPairs(): { requested: LockMode; existing: LockMode; conflict: boolean }[] {
  const rows = DOCUMENTED_TABLE.trim().split('\n');
  expect(rows).toHaveLength(8);
  return rows.flatMap((row, r) => {
    const marks = row.trim().split(/\s+/).slice(-8);
    expect(marks.every((mark) => mark === 'X' || mark === '.')).toBe(true);
    return marks.map((mark, e) => ({
      requested: DOCUMENTED_ORDER[r]!,
      existing: DOCUMENTED_ORDER[e]!,
      conflict: mark === 'X',
    }));
  });
}

describe('conflicts', () => {
  const pairs = documentedPairs();

  it('covers all 64 pairs of the documented table', () => {
    expect(pairs).toHaveLength(64);
    expect(new Set(pairs.map((pair) => `${pair.requested}/${pair.existing}`)).size).toBe(64);
  });

  it.each(pairs)('$requested requested while $existing is held: conflict $conflict', (pair) => {
    expect(conflicts(pair.requested, pair.existing)).toBe(pair.conflict);
  });

  it('is symmetric', () => {
    for (const a of LOCK_MODES) {
      for (const b of LOCK_MODES) expect(conflicts(a, b)).toBe(conflicts(b, a));
    }
  });

  it('lists the modes weakest first, as the LockMode type does', () => {
    expect(LOCK_MODES).toEqual(DOCUMENTED_ORDER);
    expect(isLockMode('ShareLock')).toBe(true);
    expect(isLockMode('SIReadLock')).toBe(false);
    expect(isLockMode(undefined)).toBe(false);
  });
});

describe('combinedMode', () => {
  const conflictSet = (modes: readonly LockMode[]) =>
    LOCK_MODES.filter((other) => modes.some((mode) => conflicts(mode, other)));

  it('conflicts with exactly what any of the modes conflicts with, for every set of modes', () => {
    for (let subset = 1; subset < 1 << LOCK_MODES.length; subset += 1) {
      const modes = LOCK_MODES.filter((_mode, index) => subset & (1 << index));
      expect(conflictSet([combinedMode(modes)]), modes.join(', ')).toEqual(conflictSet(modes));
    }
  });

  it('is the strongest mode, except that ShareLock does not conflict with itself', () => {
    expect(combinedMode(['ShareLock', 'ShareUpdateExclusiveLock'])).toBe('ShareRowExclusiveLock');
    expect(combinedMode(['ShareLock', 'RowExclusiveLock'])).toBe('ShareRowExclusiveLock');
    expect(combinedMode(['ShareLock', 'RowShareLock'])).toBe('ShareLock');
    expect(combinedMode(['ShareUpdateExclusiveLock', 'RowExclusiveLock'])).toBe(
      'ShareUpdateExclusiveLock',
    );
    expect(combinedMode(['RowExclusiveLock', 'AccessShareLock'])).toBe('RowExclusiveLock');
    expect(() => combinedMode([])).toThrowError(/at least one/);
  });
});
