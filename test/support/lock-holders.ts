/** A lock holder as inspectLocks reports one, for the pure tests of the verdict and the gate. */
import type { LockHolder } from '../../lambdas/core/locks/inspect';

/** An idle-in-transaction reader of public.orders for 47 s, as changed by `overrides`. */
export function holder(overrides: Partial<LockHolder> = {}): LockHolder {
  return {
    pid: 4242,
    user: 'alice',
    applicationName: 'psql',
    clientAddr: '10.0.0.7',
    state: 'idle in transaction',
    autovacuumWraparound: false,
    backendType: 'client backend',
    maintenanceCommand: null,
    gid: null,
    relation: { schema: 'public', name: 'orders' },
    targetMode: 'AccessExclusiveLock',
    mode: 'AccessShareLock',
    granted: true,
    transactionAgeSeconds: 47.2,
    queryAgeSeconds: 46.9,
    transactionStartMicros: '1732200000000000',
    waitEventType: 'Client',
    blockingPids: [],
    query: 'SELECT * FROM orders',
    ownSession: false,
    parallelWorkers: 0,
    ...overrides,
  };
}
