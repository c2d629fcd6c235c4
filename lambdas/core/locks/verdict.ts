/**
 * Whether a swap can take its locks now, judged from the lock holders `inspectLocks` found.
 * Pure: no I/O, so every rule is unit-tested on hand-built holders.
 */
import { displayQualified } from '../identifiers';
import { blockerClass } from './classes';
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
 * - a holder counts if its mode (held, or requested when waiting, since we would queue
 *   behind it) conflicts with the mode we need on that relation (`conflicts`, the table-level
 *   matrix);
 * - on a relation we need in RowExclusiveLock (a merge into live), a granted RowShareLock
 *   (SELECT ... FOR UPDATE/SHARE, a foreign key check) or RowExclusiveLock (INSERT, UPDATE,
 *   DELETE) does not conflict at table level, but its transaction may hold row locks on rows
 *   the merge changes, and then every attempt waits for it until lock_timeout. Row locks are
 *   not in pg_locks (they live in the rows, https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-ROWS),
 *   so such a holder counts when it looks settled on them: its transaction is older than the
 *   grace period and it is idle in that transaction, prepared, or running a statement that has
 *   itself run longer than the grace period;
 * - a plain autovacuum cancels itself when a conflicting lock is requested; an anti-wraparound
 *   one does not and counts;
 * - a transaction younger than the grace period does not count (`younger than grace`, which
 *   also covers a possible row-lock holder whose current statement is younger than it); one of
 *   unknown age counts. (The gate counts such a holder after it has outlasted a few attempts:
 *   see COLLISIONS_BEFORE_BLOCKER in ../swap/gate-decision.ts.)
 * The pipeline's own sessions count like anyone's (our own statement still running, such as
 * an index build on staging, has to finish before the swap can lock), with a sentence saying
 * so; they are never terminated.
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

/**
 * A granted lock that does not conflict with a merge's RowExclusiveLock at table level but
 * whose transaction may hold row locks the merge needs.
 */
export function mayHoldRowLocks(holder: LockHolder): boolean {
  return (
    holder.targetMode === 'RowExclusiveLock' &&
    holder.granted &&
    (holder.mode === 'RowShareLock' || holder.mode === 'RowExclusiveLock') &&
    holder.state !== 'autovacuum'
  );
}

function ignoredReason(holder: LockHolder, graceSeconds: number): IgnoredReason | null {
  const rowLocks = mayHoldRowLocks(holder);
  if (!conflicts(holder.targetMode, holder.mode) && !rowLocks) return 'does not conflict';
  if (holder.state === 'autovacuum' && !holder.autovacuumWraparound) return 'autovacuum gives way';
  if (holder.transactionAgeSeconds !== null && holder.transactionAgeSeconds < graceSeconds) {
    return 'younger than grace';
  }
  if (
    rowLocks &&
    holder.state === 'active' &&
    holder.queryAgeSeconds !== null &&
    holder.queryAgeSeconds < graceSeconds
  ) {
    return 'younger than grace';
  }
  return null;
}

/**
/**
 * e.g. `idleInTransaction: pid 4242 (user alice, application "psql", from 10.0.0.7) has held
 * AccessShareLock on public.orders for 47 s in an open transaction that is idle: "SELECT ...";
 * end that transaction or set onMaxWait to terminate`. It starts with the holder's class
 * (blockerClass), the key a per-class onMaxWait uses. On Aurora Limitless the session's node
 * follows its pid, e.g. `pid 4242 on subcluster 2 (router) (user alice, ..., its lock on
 * subclusters 2, 4)`: pids are per node, and that is where to end it.
 */
export function blockerReason(holder: LockHolder): string {
  const sentence = `${blockerClass(holder)}: ${describeHolding(holder)}`;
  if (!holder.subcluster) return sentence;
  // terminateBlockingSessions leaves sessions on a Limitless cluster alone (see terminate.ts).
  return sentence.replace(
    /,? or set onMaxWait to terminate$/,
    ` (on subcluster ${holder.subcluster.id}; onMaxWait "terminate" does not end sessions of an Aurora Limitless cluster)`,
  );
}

function describeHolding(holder: LockHolder): string {
  const relation = displayQualified(holder.relation);
  const age = formatAge(holder);
  const query = holder.query ? `: ${quoteQuery(holder.query)}` : '';
  const notes = mayHoldRowLocks(holder)
    ? `; it may hold row locks the merge needs (our ${holder.targetMode} does not conflict with ` +
      `its ${holder.mode}, but changing a row it locked waits until its transaction ends)`
    : '';
  if (holder.state === 'prepared') {
    const gid = holder.gid ?? '?';
    return (
      `prepared transaction ${sqlLiteral(gid)} (owner ${holder.user ?? 'unknown'}) has held ` +
      `${holder.mode} on ${relation} for ${age}${notes}; a prepared transaction has no session ` +
      `to end and survives restarts: finish it with COMMIT PREPARED ${sqlLiteral(gid)} or ` +
      `ROLLBACK PREPARED ${sqlLiteral(gid)} (as its owner or a superuser, in its database)`
    );
  }
  const who = describeSession(holder);
  const terminateAdvice = holder.ownSession
    ? "it is one of the pipeline's own sessions (a statement of this or an earlier run still going), which are never terminated: wait for it to finish"
    : null;
  if (!holder.granted) {
    const behind =
      holder.blockingPids.length > 0
        ? `, itself blocked by pid${holder.blockingPids.length === 1 ? '' : 's'} ${holder.blockingPids.join(', ')}` +
          (holder.blockingPids.includes(0) ? ' (0 is a prepared transaction)' : '')
        : '';
    return (
      `${who} has waited for ${holder.mode} on ${relation} in a transaction open for ${age}` +
      `${behind}; our ${holder.targetMode} would queue behind it${query}${notes}; ` +
      (terminateAdvice ??
        'end what it waits for, end that transaction, or set onMaxWait to terminate')
    );
  }
  const held = `${who} has held ${holder.mode} on ${relation} for ${age}`;
  const end = (advice: string) => `${notes}; ${terminateAdvice ?? advice}`;
  switch (holder.state) {
    case 'idle in transaction':
      return `${held} in an open transaction that is idle${query}${end('end that transaction or set onMaxWait to terminate')}`;
    case 'idle in transaction (aborted)':
      return `${held} in a failed transaction that is idle and waits for a ROLLBACK${query}${end('end that transaction or set onMaxWait to terminate')}`;
    case 'active':
      return `${held} in a transaction whose current query has run for ${formatSeconds(holder.queryAgeSeconds)}${query}${end('wait for it, cancel it, or set onMaxWait to terminate')}`;
    case 'autovacuum':
      return `${held} as an autovacuum run to prevent transaction ID wraparound, which does not give way to other locks${query}${notes}; let it finish (it protects the database) and retry later`;
    default:
      return `${held}${query}${end("end that session's transaction or set onMaxWait to terminate")}`;
  }
}

/**
 * How long the holder has held its lock: its transaction's age; when that is unknown (no
 * xact_start), its current statement has run at least as long as the transaction.
 */
function formatAge(holder: LockHolder): string {
  if (holder.transactionAgeSeconds !== null) return formatSeconds(holder.transactionAgeSeconds);
  if (holder.queryAgeSeconds !== null) return `at least ${formatSeconds(holder.queryAgeSeconds)}`;
  return formatSeconds(null);
}

function describeSession(holder: LockHolder): string {
  const details = [
    holder.state === 'autovacuum' ? 'autovacuum worker' : `user ${holder.user ?? 'unknown'}`,
  ];
  if (holder.ownSession) details.push("the pipeline's own role");
  if (holder.applicationName) details.push(`application ${JSON.stringify(holder.applicationName)}`);
  if (holder.clientAddr) details.push(`from ${holder.clientAddr}`);
  if (holder.backendType === 'walsender') details.push('on a replication connection');
  if (holder.maintenanceCommand !== null && holder.state !== 'autovacuum') {
    details.push(`running ${holder.maintenanceCommand}`);
  }
  if (holder.parallelWorkers > 0) {
    details.push(
      `leading ${holder.parallelWorkers} parallel worker${holder.parallelWorkers === 1 ? '' : 's'}`,
    );
  }
  const node = holder.subcluster;
  if (node?.lockedOn.some((id) => id !== node.id)) {
    details.push(`its lock on subclusters ${node.lockedOn.join(', ')}`);
  }
  const where = node ? ` on subcluster ${node.id}${node.type ? ` (${node.type})` : ''}` : '';
  return `pid ${holder.pid ?? 'unknown'}${where} (${details.join(', ')})`;
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
