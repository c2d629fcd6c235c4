/**
 * Kinds of blocker, so that `onMaxWait` can treat a forgotten notebook differently from a
 * running report or a backup. Each class is read from what the lock query already returns
 * (pg_stat_activity's state and backend_type, the progress views, pg_prepared_xacts); none is
 * guessed from query text. Pure, so every rule is unit-tested on hand-built holders.
 */
import type { LockHolder } from './inspect';

export const BLOCKER_CLASSES = [
  'idleInTransaction',
  'activeQuery',
  'maintenance',
  'replicationOrBackup',
  'antiWraparoundVacuum',
  'preparedTransaction',
] as const;

export type BlockerClass = (typeof BLOCKER_CLASSES)[number];

/**
 * Classes no policy may terminate, and why, as the configuration's message says it. A prepared
 * transaction has no session (pg_terminate_backend has no pid to signal); an anti-wraparound
 * autovacuum protects the database, and ending it only makes PostgreSQL start it again.
 */
export const NEVER_TERMINATED: Readonly<Partial<Record<BlockerClass, string>>> = {
  antiWraparoundVacuum:
    'an anti-wraparound autovacuum protects the database from transaction ID wraparound and is restarted at once if ended, so it is never terminated',
  preparedTransaction:
    'a prepared transaction has no session to terminate; it is ended by COMMIT PREPARED or ROLLBACK PREPARED',
};

export function canTerminate(blockerClass: BlockerClass): boolean {
  return NEVER_TERMINATED[blockerClass] === undefined;
}

/**
 * application_name of pg_dump and pg_dumpall when the user sets none: they pass their program
 * name as fallback_application_name (src/bin/pg_dump/connectdb.c,
 * https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNECT-FALLBACK-APPLICATION-NAME).
 * A dump run under another name (PGAPPNAME) is classed by its state instead.
 */
const DUMP_APPLICATIONS = ['pg_dump', 'pg_dumpall'];

/**
 * The class of a lock holder, first rule that applies:
 * - `preparedTransaction`: a prepared transaction (no session);
 * - `antiWraparoundVacuum`: an autovacuum worker running to prevent wraparound. A plain
 *   autovacuum gives way and is never a blocker (lockVerdict); should one be classed, it is
 *   `maintenance`, which is what it is;
 * - `replicationOrBackup`: a walsender (backend_type 'walsender': a logical replication
 *   subscriber copying a table, or anything on a replication connection), or a session whose
 *   application_name is pg_dump's default;
 * - `maintenance`: a session that pg_stat_progress_create_index, _cluster, _vacuum or _analyze
 *   reports (CREATE INDEX, REINDEX, CLUSTER, VACUUM FULL, a manual VACUUM or ANALYZE); ending
 *   CREATE INDEX CONCURRENTLY leaves an invalid index behind;
 * - `idleInTransaction`: idle in an open (or failed) transaction: nobody is waiting on it;
 * - `activeQuery`: everything else: running a statement, waiting for a lock itself, or in a
 *   state the lock query cannot see (`other`).
 */
export function blockerClass(holder: LockHolder): BlockerClass {
  if (holder.state === 'prepared') return 'preparedTransaction';
  if (holder.state === 'autovacuum') {
    return holder.autovacuumWraparound ? 'antiWraparoundVacuum' : 'maintenance';
  }
  if (
    holder.backendType === 'walsender' ||
    DUMP_APPLICATIONS.includes(holder.applicationName ?? '')
  ) {
    return 'replicationOrBackup';
  }
  if (holder.maintenanceCommand !== null) return 'maintenance';
  if (holder.state === 'idle in transaction' || holder.state === 'idle in transaction (aborted)') {
    return 'idleInTransaction';
  }
  return 'activeQuery';
}
