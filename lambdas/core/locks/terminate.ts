/**
 * The opt-in `onMaxWait: 'terminate'` mode: ends the sessions that keep a swap from taking
 * its locks. Each session is re-checked in the same statement that terminates it, so that a
 * session whose transaction has moved on, or a pid the server has since given to someone
 * else, is never killed.
 */
import * as z from 'zod';
import { DatabaseError } from '../errors';
import { displayQualified, type QualifiedName, qualifiedName } from '../identifiers';
import type { SqlClient } from '../sql-client';
import { BLOCKER_CLASSES, blockerClass } from './classes';
import { subcluster } from './inspect';
import { WRAPAROUND_AUTOVACUUM } from './targets-sql';
import { type Blocker, sqlLiteral } from './verdict';

/** What happened to one blocking session: for the run's log, and the state ($.terminated). */
export const terminatedSession = z.object({
  /** Null for a prepared transaction. */
  pid: z.int().nullable(),
  /** The prepared transaction's gid; null otherwise. */
  gid: z.string().nullable(),
  user: z.string().nullable(),
  applicationName: z.string().nullable(),
  clientAddr: z.string().nullable(),
  /** What kind of blocker it was (blockerClass), as onMaxWait's per-class policy names it. */
  blockerClass: z.enum(BLOCKER_CLASSES),
  /** The target relations it held or waited for locks on. */
  relations: z.array(qualifiedName).readonly(),
  transactionAgeSeconds: z.number().nullable(),
  query: z.string().nullable(),
  terminated: z.boolean(),
  /**
   * `terminated`: we ended it. `ended`: it no longer blocks without us, because the session
   * ended, its transaction moved on, or it gave the lock back between the check and now; the
   * swap may go ahead as if it had been terminated. `refused`: it still blocks (see reason).
   */
  outcome: z.enum(['terminated', 'ended', 'refused']),
  /** Why it was not terminated; null when it was. */
  reason: z.string().nullable(),
  /** What a person can do instead, when it was not terminated and something can be done. */
  advice: z.string().nullable(),
  /** On Aurora Limitless, the node the session runs on (as LockHolder.subcluster). */
  subcluster: subcluster.optional(),
});
export type TerminatedSession = z.infer<typeof terminatedSession>;

export interface TerminateOptions {
  /** Sessions whose transaction is younger than this are left alone. */
  readonly graceSeconds: number;
  /**
   * application_name prefix of this product's own sessions, which are never terminated; so are
   * the sessions of the role running this (see LockHolder.ownSession), which is what tells
   * our own sessions apart over the RDS Data API, where application_name is not ours to set.
   */
  readonly ownApplicationPrefix: string;
}

/** How long pg_terminate_backend waits for the session to exit, so its locks are gone on return. */
export const TERMINATE_WAIT_MS = 5000;

/**
 * `:pid`, `:relations` (JSON array of {schema, name}), `:transactionStartMicros` (as
 * LockHolder.transactionStartMicros), `:graceSeconds`, `:ownPrefix`, `:waitMs`. Returns no row
 * when the session has ended, else one row saying whether it was terminated or why not.
 */
export const TERMINATE_SQL = `
WITH wanted AS (
  SELECT to_regclass(format('%I.%I', r.schema, r.name))::oid AS relid
  FROM jsonb_to_recordset(:relations::jsonb) AS r(schema text, name text)
),
session AS (
  SELECT a.pid, a.usename, a.application_name, host(a.client_addr) AS client_addr,
         left(a.query, 500) AS query,
         ${WRAPAROUND_AUTOVACUUM} AS wraparound,
         (extract(epoch FROM a.xact_start) * 1000000)::bigint::text AS transaction_start_micros,
         extract(epoch FROM statement_timestamp() - a.xact_start)::float8 AS age,
         EXISTS (
           SELECT 1
           FROM pg_locks l
           JOIN wanted w ON w.relid = l.relation
           LEFT JOIN pg_stat_activity pw ON pw.pid = l.pid
           -- the session's own locks, or its parallel workers' (a parallel query's leader is
           -- the one terminated, and its workers end with it)
           WHERE coalesce(pw.leader_pid, l.pid) = a.pid
             AND l.locktype = 'relation'
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         ) AS still_locks
  FROM pg_stat_activity a
  WHERE a.pid = :pid::int
),
judged AS (
  SELECT s.*,
    CASE
      WHEN s.pid = pg_backend_pid() THEN 'it is this session'
      WHEN s.usename = session_user
        OR left(coalesce(s.application_name, ''), length(:ownPrefix::text)) = :ownPrefix::text
        THEN 'it is one of our own sessions'
      WHEN s.transaction_start_micros IS DISTINCT FROM :transactionStartMicros::text
        THEN 'the transaction that held the lock has ended'
      WHEN NOT s.still_locks THEN 'it no longer holds or waits for a lock on a target'
      WHEN s.age < :graceSeconds::float8 THEN 'its transaction is younger than the grace period'
      WHEN s.wraparound THEN 'it is an anti-wraparound autovacuum, which protects the database'
    END AS refusal,
    s.transaction_start_micros IS DISTINCT FROM :transactionStartMicros::text
      OR NOT s.still_locks AS gone
  FROM session s
)
SELECT j.pid::int AS pid,
       j.usename::text AS user_name,
       j.application_name::text AS application_name,
       j.client_addr::text AS client_addr,
       j.query::text AS query,
       j.age::float8 AS age,
       j.refusal::text AS refusal,
       j.gone::boolean AS gone,
       CASE WHEN j.refusal IS NULL THEN pg_terminate_backend(j.pid, :waitMs::int8) ELSE false END
         ::boolean AS terminated
FROM judged j
`;

/** Whether the transaction (`:pid`, `:transactionStartMicros`) is still open. */
const STILL_THERE_SQL = `
SELECT EXISTS (
  SELECT 1 FROM pg_stat_activity a
  WHERE a.pid = :pid::int
    AND (extract(epoch FROM a.xact_start) * 1000000)::bigint::text = :transactionStartMicros::text
)::boolean AS alive
`;

interface TerminateRow {
  [column: string]: unknown;
  pid: number;
  user_name: string | null;
  application_name: string | null;
  client_addr: string | null;
  query: string | null;
  age: number | null;
  refusal: string | null;
  gone: boolean;
  terminated: boolean;
}

/**
 * Terminates each blocking session older than the grace period, one statement per session so
 * that one refusal by the server does not spare the others. Never terminates our own sessions
 * (this backend, any session of the role running this, or an application_name starting with
 * `ownApplicationPrefix`), prepared transactions (they have no session; the record says how
 * to end them) or an anti-wraparound autovacuum. A parallel query is one blocker under its
 * leader's pid (see inspectLocks): ending the leader ends its workers. Returns one record per
 * session; `stillBlocking` picks those that still block.
 */
export async function terminateBlockingSessions(
  db: SqlClient,
  blockers: readonly Blocker[],
  options: TerminateOptions,
): Promise<TerminatedSession[]> {
  if (options.ownApplicationPrefix === '') {
    throw new Error(
      'terminateBlockingSessions: ownApplicationPrefix is empty, so every session would count as our own',
    );
  }
  if (!Number.isFinite(options.graceSeconds) || options.graceSeconds < 0) {
    throw new Error(
      `terminateBlockingSessions: graceSeconds must be a number >= 0, not ${options.graceSeconds}`,
    );
  }
  const records: TerminatedSession[] = [];
  for (const group of groupBySession(blockers)) {
    records.push(await terminateOne(db, group, options));
  }
  return records;
}

function groupBySession(blockers: readonly Blocker[]): Blocker[][] {
  const groups = new Map<string, Blocker[]>();
  for (const blocker of blockers) {
    const { pid, gid, subcluster } = blocker.holder;
    const key = pid === null ? `gid ${gid}` : `pid ${pid} on ${subcluster?.id ?? 'this node'}`;
    groups.set(key, [...(groups.get(key) ?? []), blocker]);
  }
  return [...groups.values()];
}

async function terminateOne(
  db: SqlClient,
  group: readonly Blocker[],
  options: TerminateOptions,
): Promise<TerminatedSession> {
  const { holder } = group[0]!;
  const relations = uniqueRelations(group);
  const fromInspection = {
    pid: holder.pid,
    gid: holder.gid,
    user: holder.user,
    applicationName: holder.applicationName,
    clientAddr: holder.clientAddr,
    blockerClass: blockerClass(holder),
    relations,
    transactionAgeSeconds: holder.transactionAgeSeconds,
    query: holder.query,
    ...(holder.subcluster ? { subcluster: holder.subcluster } : {}),
  };
  const notTerminated = (reason: string, advice: string | null = null): TerminatedSession => ({
    ...fromInspection,
    terminated: false,
    outcome: 'refused',
    reason,
    advice,
  });

  if (holder.subcluster) {
    // Its pid is one of its node's; pg_terminate_backend and the re-check in TERMINATE_SQL
    // read this router's processes only, and AWS documents no way to end another node's.
    return notTerminated(
      `it runs on subcluster ${holder.subcluster.id} of an Aurora Limitless cluster, where the pipeline does not end sessions`,
      'end its transaction from the application that opened it, or wait for it',
    );
  }
  if (holder.pid === null) {
    return notTerminated(
      'a prepared transaction has no session to terminate',
      holder.gid === null ? null : `ROLLBACK PREPARED ${sqlLiteral(holder.gid)}`,
    );
  }
  if (holder.transactionStartMicros === null) {
    return notTerminated(
      'its transaction start is unknown, so a reused pid could not be told apart',
      'grant pg_read_all_stats to the role that runs the sync so that it sees other sessions',
    );
  }
  const parameters = {
    pid: holder.pid,
    relations: JSON.stringify(relations.map(({ schema, name }) => ({ schema, name }))),
    transactionStartMicros: holder.transactionStartMicros,
    graceSeconds: options.graceSeconds,
    ownPrefix: options.ownApplicationPrefix,
    waitMs: TERMINATE_WAIT_MS,
  };
  let rows: TerminateRow[];
  try {
    rows = await db.query<TerminateRow>(TERMINATE_SQL, parameters);
  } catch (error) {
    if (error instanceof DatabaseError && error.sqlState === '42501') {
      return notTerminated(
        `the server refused: ${error.message}`,
        'end that session as a role allowed to (its own role, a member of pg_signal_backend, or a superuser)',
      );
    }
    throw error;
  }
  const ended = (reason: string): TerminatedSession => ({
    ...fromInspection,
    terminated: false,
    outcome: 'ended',
    reason,
    advice: null,
  });
  const row = rows[0];
  if (!row) return ended('the session had already ended');
  const fresh = {
    ...fromInspection,
    user: row.user_name,
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    transactionAgeSeconds: row.age,
    query: row.query,
  };
  if (row.refusal !== null) {
    return {
      ...fresh,
      terminated: false,
      outcome: row.gone ? 'ended' : 'refused',
      reason: row.refusal,
      advice: null,
    };
  }
  if (!row.terminated) {
    // pg_terminate_backend returns false both when the wait ran out and when the process had
    // already exited (a WARNING, not an error): look again to tell them apart.
    const [still] = await db.query<{ [column: string]: unknown; alive: boolean }>(STILL_THERE_SQL, {
      pid: holder.pid,
      transactionStartMicros: holder.transactionStartMicros,
    });
    if (!still?.alive) return ended('the session ended as it was signalled');
    return {
      ...fresh,
      terminated: false,
      outcome: 'refused',
      reason: `it was signalled but had not exited after ${TERMINATE_WAIT_MS / 1000} s`,
      advice: null,
    };
  }
  return { ...fresh, terminated: true, outcome: 'terminated', reason: null, advice: null };
}

/**
 * The records of sessions that still block: neither terminated nor ended by themselves. The
 * swap can go ahead when this is empty; otherwise it should fail naming them.
 */
export function stillBlocking(records: readonly TerminatedSession[]): TerminatedSession[] {
  return records.filter((record) => record.outcome === 'refused');
}

function uniqueRelations(group: readonly Blocker[]): QualifiedName[] {
  const byName = new Map<string, QualifiedName>();
  for (const { holder } of group) byName.set(displayQualified(holder.relation), holder.relation);
  return [...byName.values()];
}
