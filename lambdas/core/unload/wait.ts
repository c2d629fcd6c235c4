/**
 * Waiting for a short warehouse statement (column discovery, a count) inside one handler.
 * Long ones (the unload batch) are polled by the state machine instead, between handlers.
 */
import type { StatementState, Warehouse } from '../transfer/ports';
import { StatementFailedError, StatementTimeoutError } from './errors';

export interface WaitOptions {
  readonly sleep: (ms: number) => Promise<void>;
  /** Give up after this long (measured with `now`). */
  readonly timeoutMs: number;
  /** Between the first two DescribeStatement calls. */
  readonly pollMs: number;
  /**
   * Each pause this many times the one before (default 1: every pause `pollMs`), so that a
   * statement is seen done at most (growth - 1) of its time late, however long it takes.
   */
  readonly pollGrowth?: number;
  /** The longest pause, with `pollGrowth` (default: no limit but the timeout). */
  readonly maxPollMs?: number;
  readonly now?: () => number;
  /** Names the statement in errors, e.g. `column discovery for sales.orders`. */
  readonly what?: string;
}

/** Polls until the statement is done; a failure or a timeout throws, naming the statement. */
export async function waitForStatement(
  warehouse: Warehouse,
  statementId: string,
  options: WaitOptions,
): Promise<StatementState & { readonly state: 'done' }> {
  const now = options.now ?? Date.now;
  const what = options.what ?? 'the statement';
  const started = now();
  let pause = options.pollMs;
  for (;;) {
    const state = await warehouse.describe(statementId);
    if (state.state === 'done') return state;
    if (state.state === 'failed') throw new StatementFailedError(statementId, state.error, what);
    const waited = now() - started;
    if (waited >= options.timeoutMs) {
      throw new StatementTimeoutError(
        `${what} (Redshift statement ${statementId}) was still ${state.status} after ${Math.round(waited / 1000)} s; the cluster may be busy or paused. Look it up with DescribeStatement, or raise the timeout.`,
      );
    }
    await options.sleep(Math.min(pause, options.timeoutMs - waited));
    pause = Math.min(
      pause * (options.pollGrowth ?? 1),
      options.maxPollMs ?? Number.POSITIVE_INFINITY,
    );
  }
}
