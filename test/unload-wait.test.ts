import { describe, expect, it } from 'vitest';
import type { StatementState, Warehouse } from '../lambdas/core/transfer/ports';
import { StatementFailedError, StatementTimeoutError } from '../lambdas/core/unload/errors';
import { waitForStatement } from '../lambdas/core/unload/wait';

/** A warehouse whose statement goes through the given states, one per describe call. */
function scripted(states: StatementState[]) {
  const calls: string[] = [];
  const warehouse: Warehouse = {
    submitBatch: () => Promise.reject(new Error('not used')),
    submitStatement: () => Promise.reject(new Error('not used')),
    submitInSession: () => Promise.reject(new Error('not used')),
    fetchRows: () => Promise.reject(new Error('not used')),
    cancel: () => Promise.reject(new Error('not used')),
    listStatements: () => Promise.reject(new Error('not used')),
    describe: async (id) => {
      calls.push(id);
      return states[Math.min(calls.length - 1, states.length - 1)]!;
    },
  };
  return { warehouse, calls };
}

/** A clock that moves only when the waiter sleeps. */
function fakeClock() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

const running: StatementState = { state: 'running', status: 'STARTED' };

describe('waitForStatement', () => {
  it('polls until the statement is done', async () => {
    const { warehouse, calls } = scripted([
      { state: 'running', status: 'SUBMITTED' },
      running,
      { state: 'done', status: 'FINISHED' },
    ]);
    const clock = fakeClock();
    const state = await waitForStatement(warehouse, 'abc', {
      ...clock,
      timeoutMs: 10_000,
      pollMs: 250,
    });
    expect(state).toEqual({ state: 'done', status: 'FINISHED' });
    expect(calls).toEqual(['abc', 'abc', 'abc']);
    expect(clock.sleeps).toEqual([250, 250]);
  });

  it('pauses longer each time by pollGrowth, up to maxPollMs', async () => {
    const { warehouse, calls } = scripted([
      ...Array(6).fill(running),
      { state: 'done', status: 'FINISHED' },
    ]);
    const clock = fakeClock();
    await waitForStatement(warehouse, 'abc', {
      ...clock,
      timeoutMs: 10_000,
      pollMs: 50,
      pollGrowth: 1.5,
      maxPollMs: 200,
    });
    expect(clock.sleeps).toEqual([50, 75, 112.5, 168.75, 200, 200]);
    expect(calls).toHaveLength(7);
  });

  it("throws Redshift's error, naming the statement", async () => {
    const { warehouse } = scripted([
      running,
      { state: 'failed', status: 'FAILED', error: 'permission denied for relation orders' },
    ]);
    const wait = waitForStatement(warehouse, 'abc', {
      ...fakeClock(),
      timeoutMs: 10_000,
      pollMs: 100,
      what: 'column discovery for sales.orders',
    });
    await expect(wait).rejects.toThrowError(StatementFailedError);
    await expect(
      waitForStatement(warehouse, 'abc', { ...fakeClock(), timeoutMs: 10_000, pollMs: 100 }),
    ).rejects.toThrowError('the statement (Redshift statement abc) failed: permission denied');
  });

  it('gives up at the timeout without sleeping past it', async () => {
    const { warehouse, calls } = scripted([running]);
    const clock = fakeClock();
    const wait = waitForStatement(warehouse, 'abc', {
      ...clock,
      timeoutMs: 1_000,
      pollMs: 300,
      what: 'column discovery',
    });
    await expect(wait).rejects.toThrowError(StatementTimeoutError);
    await expect(wait).rejects.toThrowError(
      'column discovery (Redshift statement abc) was still STARTED after 1 s',
    );
    expect(clock.sleeps).toEqual([300, 300, 300, 100]);
    expect(calls).toHaveLength(5);
  });
});
