/**
 * Whether a swap can take its locks now, judged from the lock holders `inspectLocks` found.
 * Pure: no I/O, so every rule is unit-tested on hand-built holders.
 */
import { displayQualified } from '../identifiers';
import { conflicts } from './conflicts';
import type { LockHolder } from './inspect';

/**
 * A conflicting holder younger than this does not make the swap wait: the swap itself, under a
 * short lock_timeout and retried, outlasts it. Without it a table read by a steady stream of
 * short queries would never be swapped.
 */
export const DEFAULT_GRACE_SECONDS = 2;

export interface Blocker {
  readonly holder: LockHolder;
  /** A sentence a person can act on: who, what lock, on what, for how long, doing what, and what to do. */
  readonly reason: string;
}

export type IgnoredReason = 'does not conflict' | 'autovacuum gives way' | 'younger than grace';

export interface IgnoredHolder {
  readonly holder: LockHolder;
  readonly reason: IgnoredReason;
}

export type LockVerdict =
  | { readonly safe: true; readonly ignored: IgnoredHolder[] }
  | { readonly safe: false; readonly blockers: Blocker[]; readonly ignored: IgnoredHolder[] };

export interface LockVerdictOptions {
  /** Seconds; default DEFAULT_GRACE_SECONDS. */
  readonly graceSeconds?: number;
}

/**
 * Sorts holders into blockers and ignored ones:
 * - a holder counts only if its mode (held, or requested when waiting, since we would queue
 *   behind it) conflicts with the mode we need on that relation;
 * - a plain autovacuum cancels itself when a conflicting lock is requested; an anti-wraparound
 *   one does not and counts;
 * - a transaction younger than the grace period does not count; one of unknown age does.
 */
export function lockVerdict(
  holders: readonly LockHolder[],
  options: LockVerdictOptions = {},
): LockVerdict {
  const graceSeconds = options.graceSeconds ?? DEFAULT_GRACE_SECONDS;
  if (!Number.isFinite(graceSeconds) || graceSeconds < 0) {
    throw new Error(`lockVerdict: graceSeconds must be a number >= 0, not ${graceSeconds}`);
  }
  const blockers: Blocker[] = [];
  const ignored: IgnoredHolder[] = [];
  for (const holder of holders) {
    const why = ignoredReason(holder, graceSeconds);
    if (why) ignored.push({ holder, reason: why });
    else blockers.push({ holder, reason: blockerReason(holder) });
  }
  return blockers.length === 0 ? { safe: true, ignored } : { safe: false, blockers, ignored };
}

function ignoredReason(holder: LockHolder, graceSeconds: number): IgnoredReason | null {
  if (!conflicts(holder.targetMode, holder.mode)) return 'does not conflict';
  if (holder.state === 'autovacuum' && !holder.autovacuumWraparound) return 'autovacuum gives way';
  if (holder.transactionAgeSeconds !== null && holder.transactionAgeSeconds < graceSeconds) {
    return 'younger than grace';
  }
  return null;
}

/**
 * e.g. `pid 4242 (user alice, application "psql", from 10.0.0.7) has held AccessShareLock on
 * public.orders for 47 s in an open transaction that is idle: "SELECT ..."; end that
 * transaction or set onMaxWait to terminate`
 */
export function blockerReason(holder: LockHolder): string {
  const relation = displayQualified(holder.relation);
  const age = formatSeconds(holder.transactionAgeSeconds);
  const query = holder.query ? `: ${quoteQuery(holder.query)}` : '';
  if (holder.state === 'prepared') {
    const gid = holder.gid ?? '?';
    return (
      `prepared transaction ${sqlLiteral(gid)} (owner ${holder.user ?? 'unknown'}) has held ` +
      `${holder.mode} on ${relation} for ${age}; a prepared transaction has no session to end ` +
      `and survives restarts: finish it with COMMIT PREPARED ${sqlLiteral(gid)} or ` +
      `ROLLBACK PREPARED ${sqlLiteral(gid)} (as its owner or a superuser, in its database)`
    );
  }
  const who = describeSession(holder);
  if (!holder.granted) {
    const behind =
      holder.blockingPids.length > 0
        ? `, itself blocked by pid${holder.blockingPids.length === 1 ? '' : 's'} ${holder.blockingPids.join(', ')}` +
          (holder.blockingPids.includes(0) ? ' (0 is a prepared transaction)' : '')
        : '';
    return (
      `${who} has waited for ${holder.mode} on ${relation} in a transaction open for ${age}` +
      `${behind}; our ${holder.targetMode} would queue behind it${query}; end what it waits ` +
      `for, end that transaction, or set onMaxWait to terminate`
    );
  }
  const held = `${who} has held ${holder.mode} on ${relation} for ${age}`;
  switch (holder.state) {
    case 'idle in transaction':
      return `${held} in an open transaction that is idle${query}; end that transaction or set onMaxWait to terminate`;
    case 'idle in transaction (aborted)':
      return `${held} in a failed transaction that is idle and waits for a ROLLBACK${query}; end that transaction or set onMaxWait to terminate`;
    case 'active':
      return `${held} in a transaction whose current query has run for ${formatSeconds(holder.queryAgeSeconds)}${query}; wait for it, cancel it, or set onMaxWait to terminate`;
    case 'autovacuum':
      return `${held} as an autovacuum run to prevent transaction ID wraparound, which does not give way to other locks${query}; let it finish (it protects the database) and retry later`;
    default:
      return `${held}${query}; end that session's transaction or set onMaxWait to terminate`;
  }
}

function describeSession(holder: LockHolder): string {
  const details = [
    holder.state === 'autovacuum' ? 'autovacuum worker' : `user ${holder.user ?? 'unknown'}`,
  ];
  if (holder.applicationName) details.push(`application ${JSON.stringify(holder.applicationName)}`);
  if (holder.clientAddr) details.push(`from ${holder.clientAddr}`);
  return `pid ${holder.pid ?? 'unknown'} (${details.join(', ')})`;
}

export function formatSeconds(seconds: number | null): string {
  if (seconds === null) return 'an unknown time';
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  return `${Math.round(seconds)} s`;
}

const QUERY_IN_MESSAGE_CHARS = 200;

function quoteQuery(query: string): string {
  const oneLine = query.replace(/\s+/g, ' ').trim();
  const short =
    oneLine.length > QUERY_IN_MESSAGE_CHARS
      ? `${oneLine.slice(0, QUERY_IN_MESSAGE_CHARS)}…`
      : oneLine;
  return JSON.stringify(short);
}

/** 'text' with embedded single quotes doubled, as SQL writes a string literal. */
export function sqlLiteral(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
