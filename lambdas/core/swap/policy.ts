/**
 * How the swap waits for its locks: the settings, their defaults and the error when waiting
 * ends without a swap. Its own module so that the engine, the gate and the configuration can
 * all import it without importing each other.
 */
import { SyncError } from '../errors';
import { type BlockerClass, blockerClass, canTerminate } from '../locks/classes';
import type { LockHolder } from '../locks/inspect';
import { type Blocker, DEFAULT_GRACE_SECONDS } from '../locks/verdict';

/** What onMaxWait may do with a blocker: the configuration and the state machine's state parse it by this list. */
export const ON_MAX_WAIT = ['fail', 'terminate'] as const;
export type OnMaxWait = (typeof ON_MAX_WAIT)[number];

/**
 * `onMaxWait` as configured: one action for every class that can be terminated, or one per
 * class (a class left out fails). A class that can never be terminated (NEVER_TERMINATED) fails
 * whatever the setting; the configuration refuses asking otherwise by name.
 */
export type OnMaxWaitSetting = OnMaxWait | Readonly<Partial<Record<BlockerClass, OnMaxWait>>>;

/** What the policy does with one blocker at maxWaitSeconds, and why, for its sentence and the summary. */
export interface MaxWaitAction {
  readonly blockerClass: BlockerClass;
  readonly action: OnMaxWait;
  /** Why it is not `terminate` when the setting asks for it; null otherwise. */
  readonly exception: string | null;
}

export function maxWaitAction(
  holder: LockHolder,
  setting: OnMaxWaitSetting | undefined,
): MaxWaitAction {
  const kind = blockerClass(holder);
  const asked = typeof setting === 'object' ? (setting[kind] ?? 'fail') : (setting ?? 'fail');
  if (asked === 'fail') return { blockerClass: kind, action: 'fail', exception: null };
  if (!canTerminate(kind)) {
    return { blockerClass: kind, action: 'fail', exception: `${kind} is never terminated` };
  }
  if (holder.ownSession) {
    return {
      blockerClass: kind,
      action: 'fail',
      exception: "the pipeline's own sessions are never terminated",
    };
  }
  if (holder.subcluster) {
    // A pid names a process on its own node; terminate.ts leaves Limitless sessions alone.
    return {
      blockerClass: kind,
      action: 'fail',
      exception: 'sessions of an Aurora Limitless cluster are never terminated',
    };
  }
  return { blockerClass: kind, action: 'terminate', exception: null };
}

/** Whether the setting terminates anything at all (and so needs pg_signal_backend). */
export function mayTerminate(setting: OnMaxWaitSetting | undefined): boolean {
  if (typeof setting !== 'object') return setting === 'terminate';
  return Object.entries(setting).some(
    ([kind, action]) => action === 'terminate' && canTerminate(kind as BlockerClass),
  );
}

export interface WaitPolicy {
  /** Conflicting holders younger than this do not make us wait. Default 2. */
  readonly graceSeconds?: number;
  /** How often to look again while blocked. Default 1. */
  readonly pollIntervalSeconds?: number;
  /** How long to wait for blockers in all. Default 3600. */
  readonly maxWaitSeconds?: number;
  /** What to do when blockers outlast maxWaitSeconds, for all or per class. Default 'fail'. */
  readonly onMaxWait?: OnMaxWaitSetting;
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
