/**
 * How the swap waits for its locks: the settings, their defaults and the error when waiting
 * ends without a swap. Its own module so that the engine, the gate and the configuration can
 * all import it without importing each other.
 */
import { SyncError } from '../errors';
import { type Blocker, DEFAULT_GRACE_SECONDS } from '../locks/verdict';

export type OnMaxWait = 'fail' | 'terminate';

export interface WaitPolicy {
  /** Conflicting holders younger than this do not make us wait. Default 2. */
  readonly graceSeconds?: number;
  /** How often to look again while blocked. Default 1. */
  readonly pollIntervalSeconds?: number;
  /** How long to wait for blockers in all. Default 3600. */
  readonly maxWaitSeconds?: number;
  /** What to do when blockers outlast maxWaitSeconds. Default 'fail'. */
  readonly onMaxWait?: OnMaxWait;
  /** application_name prefix of our own sessions, never terminated. */
  readonly ownApplicationPrefix?: string;
}

export const DEFAULT_WAIT_POLICY = {
  graceSeconds: DEFAULT_GRACE_SECONDS,
  pollIntervalSeconds: 1,
  maxWaitSeconds: 3600,
  onMaxWait: 'fail',
  ownApplicationPrefix: 'redshift-aurora-sync',
} as const satisfies Required<WaitPolicy>;

/** Waiting for locks ended without a swap. Live tables are untouched. */
export class LockWaitTimeoutError extends SyncError {
  constructor(
    readonly waitedSeconds: number,
    readonly blockers: readonly Blocker[],
    notes: readonly string[] = [],
  ) {
    super(
      `Gave up after waiting ${waitedSeconds.toFixed(0)} s for locks; live tables are unchanged and staging is kept for a re-run. Blocking now:\n- ${[
        ...(blockers.length > 0
          ? blockers.map((blocker) => blocker.reason)
          : ['nobody for long: every attempt collided with short-lived lock holders']),
        ...notes,
      ].join('\n- ')}`,
    );
  }
}
