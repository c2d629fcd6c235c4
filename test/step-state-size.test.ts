/**
 * The lock gate's state stays far below Step Functions' 256 KB per state however many sessions
 * block (passing it is States.DataLimitExceeded, which no Catch catches): each list keeps at
 * most STATE_SESSIONS sessions and each query its first STATE_QUERY_CHARACTERS characters.
 */
import { describe, expect, it } from 'vitest';
import { describeBlocker, STATE_QUERY_CHARACTERS, STATE_SESSIONS } from '../lambdas/pipeline/state';
import { mergeSeen } from '../lambdas/pipeline/steps/locks';
import { AWS_LIMITS } from './aws-contract/limits';
import { holder } from './support/lock-holders';

const LONG_QUERY = `SELECT ${'x, '.repeat(300)}1 FROM public.orders`;

function blockers(count: number, firstPid: number) {
  return Array.from({ length: count }, (_, index) =>
    describeBlocker(
      holder({ pid: firstPid + index, query: LONG_QUERY }),
      'idle in transaction',
      'fail',
    ),
  );
}

describe('the state of a long wait behind hundreds of sessions', () => {
  it('keeps the first STATE_SESSIONS blockers seen, each query cut short', () => {
    let seen = mergeSeen([], blockers(30, 1000));
    for (let round = 1; round <= 10; round += 1) seen = mergeSeen(seen, blockers(40, 1000 * round));
    expect(seen).toHaveLength(STATE_SESSIONS);
    expect(seen[0]!.pid).toBe(1000);
    expect(seen.every((blocker) => blocker.query!.length === STATE_QUERY_CHARACTERS)).toBe(true);
    // The same session seen again is not listed twice.
    expect(mergeSeen(seen.slice(0, 3), seen.slice(0, 3))).toHaveLength(3);
  });

  it('fits the whole $.locks of 400 blockers several times over in a state', () => {
    const current = blockers(400, 1);
    const state = {
      decision: 'wait',
      firstCheckAt: 0,
      waitedSeconds: 3600,
      checks: 700,
      blockers: current.slice(0, STATE_SESSIONS),
      blockersSeen: mergeSeen([], current),
    };
    const bytes = Buffer.byteLength(JSON.stringify(state));
    expect(bytes).toBeLessThan(AWS_LIMITS.stepFunctions.maxPayloadBytes / 4);
  });
});
