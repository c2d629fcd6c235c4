import { describe, expect, it } from 'vitest';
import { DEFAULT_GRACE_SECONDS, lockVerdict } from '../lambdas/core/locks/verdict';
import { holder } from './support/lock-holders';

describe('lockVerdict', () => {
  it('is safe with no holders, and grace defaults to 2 s', () => {
    expect(lockVerdict([])).toEqual({ safe: true, ignored: [] });
    expect(DEFAULT_GRACE_SECONDS).toBe(2);
    expect(lockVerdict([holder({ transactionAgeSeconds: 1.9 })]).safe).toBe(true);
    expect(lockVerdict([holder({ transactionAgeSeconds: 2.1 })]).safe).toBe(false);
  });

  it('says who holds what, for how long, doing what, and what to do', () => {
    const verdict = lockVerdict([holder()], { graceSeconds: 2 });
    expect(verdict).toEqual({
      safe: false,
      ignored: [],
      blockers: [
        {
          holder: holder(),
          reason:
            'idleInTransaction: pid 4242 (user alice, application "psql", from 10.0.0.7) has held AccessShareLock on public.orders for 47 s in an open transaction that is idle: "SELECT * FROM orders"; end that transaction or set onMaxWait to terminate',
        },
      ],
    });
  });

  it('counts only modes that conflict with the one we need', () => {
    const reader = holder({ targetMode: 'RowExclusiveLock', mode: 'AccessShareLock' });
    const sharer = holder({ targetMode: 'RowExclusiveLock', mode: 'ShareLock' });
    const verdict = lockVerdict([reader, sharer], { graceSeconds: 2 });
    expect(verdict.ignored).toEqual([{ holder: reader, reason: 'does not conflict' }]);
    expect(verdict.safe).toBe(false);
    if (!verdict.safe) expect(verdict.blockers.map((b) => b.holder)).toEqual([sharer]);
  });

  it('counts a waiter whose requested mode conflicts, since we would queue behind it', () => {
    const waiter = holder({
      state: 'active',
      granted: false,
      mode: 'AccessShareLock',
      waitEventType: 'Lock',
      blockingPids: [77, 0],
    });
    const verdict = lockVerdict([waiter], { graceSeconds: 2 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers[0]!.reason).toBe(
      'activeQuery: pid 4242 (user alice, application "psql", from 10.0.0.7) has waited for AccessShareLock on public.orders in a transaction open for 47 s, itself blocked by pids 77, 0 (0 is a prepared transaction); our AccessExclusiveLock would queue behind it: "SELECT * FROM orders"; end what it waits for, end that transaction, or set onMaxWait to terminate',
    );
    const harmless = holder({ granted: false, targetMode: 'RowExclusiveLock' });
    expect(lockVerdict([harmless]).ignored).toEqual([
      { holder: harmless, reason: 'does not conflict' },
    ]);
  });

  it('ignores a conflicting holder younger than grace, whatever it is doing', () => {
    const young = [
      holder({ state: 'active', transactionAgeSeconds: 0.3 }),
      holder({ state: 'idle in transaction', transactionAgeSeconds: 0.3 }),
      holder({ state: 'prepared', pid: null, gid: 'g', transactionAgeSeconds: 0.3 }),
      holder({ state: 'autovacuum', autovacuumWraparound: true, transactionAgeSeconds: 0.3 }),
    ];
    const verdict = lockVerdict(young, { graceSeconds: 0.5 });
    expect(verdict).toEqual({
      safe: true,
      ignored: young.map((h) => ({ holder: h, reason: 'younger than grace' })),
    });
  });

  it('counts a holder of unknown age', () => {
    expect(lockVerdict([holder({ transactionAgeSeconds: null, state: 'other' })]).safe).toBe(false);
  });

  it('ignores a plain autovacuum, which gives way, but not an anti-wraparound one', () => {
    const autovacuum = {
      pid: 99,
      user: null,
      applicationName: '',
      clientAddr: null,
      state: 'autovacuum',
      mode: 'ShareUpdateExclusiveLock',
      transactionAgeSeconds: 600,
      waitEventType: null,
      query: 'autovacuum: VACUUM public.orders',
    } as const;
    const plain = holder(autovacuum);
    const wraparound = holder({
      ...autovacuum,
      autovacuumWraparound: true,
      query: 'autovacuum: VACUUM public.orders (to prevent wraparound)',
    });
    expect(lockVerdict([plain])).toEqual({
      safe: true,
      ignored: [{ holder: plain, reason: 'autovacuum gives way' }],
    });
    const verdict = lockVerdict([plain, wraparound]);
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers).toEqual([
      {
        holder: wraparound,
        reason:
          'antiWraparoundVacuum: pid 99 (autovacuum worker) has held ShareUpdateExclusiveLock on public.orders for 600 s as an autovacuum run to prevent transaction ID wraparound, which does not give way to other locks: "autovacuum: VACUUM public.orders (to prevent wraparound)"; let it finish (it protects the database) and retry later',
      },
    ]);
    // A plain autovacuum's lock does not conflict with a merge's RowExclusiveLock anyway.
    expect(
      lockVerdict([holder({ ...autovacuum, targetMode: 'RowExclusiveLock' })]).ignored,
    ).toEqual([expect.objectContaining({ reason: 'does not conflict' })]);
  });

  it('tells how to end a prepared transaction, which cannot be terminated', () => {
    const prepared = holder({
      pid: null,
      state: 'prepared',
      gid: "nightly'42",
      applicationName: null,
      clientAddr: null,
      query: null,
      waitEventType: null,
      transactionAgeSeconds: 3.25,
    });
    const verdict = lockVerdict([prepared], { graceSeconds: 2 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers[0]!.reason).toBe(
      "preparedTransaction: prepared transaction 'nightly''42' (owner alice) has held AccessShareLock on public.orders for 3.3 s; a prepared transaction has no session to end and survives restarts: finish it with COMMIT PREPARED 'nightly''42' or ROLLBACK PREPARED 'nightly''42' (as its owner or a superuser, in its database)",
    );
  });

  it('describes active and aborted transactions, quoting names as a person writes them', () => {
    const relation = { schema: 'Sales Dept', name: 'Order "Items"' };
    const verdict = lockVerdict([
      holder({ relation, state: 'active', queryAgeSeconds: 12, query: 'UPDATE x\n  SET y = 1' }),
      holder({ relation, state: 'idle in transaction (aborted)', clientAddr: null }),
    ]);
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((b) => b.reason)).toEqual([
      'activeQuery: pid 4242 (user alice, application "psql", from 10.0.0.7) has held AccessShareLock on "Sales Dept"."Order ""Items""" for 47 s in a transaction whose current query has run for 12 s: "UPDATE x SET y = 1"; wait for it, cancel it, or set onMaxWait to terminate',
      'idleInTransaction: pid 4242 (user alice, application "psql") has held AccessShareLock on "Sales Dept"."Order ""Items""" for 47 s in a failed transaction that is idle and waits for a ROLLBACK: "SELECT * FROM orders"; end that transaction or set onMaxWait to terminate',
    ]);
  });

  it('on a merge target, counts settled sessions that may hold row locks, saying so', () => {
    const onLive = { targetMode: 'RowExclusiveLock', transactionAgeSeconds: 47.2 } as const;
    const forUpdate = holder({
      ...onLive,
      mode: 'RowShareLock',
      query: 'SELECT * FROM orders WHERE id = 1 FOR UPDATE',
    });
    const writer = holder({
      ...onLive,
      pid: 4343,
      mode: 'RowExclusiveLock',
      query: 'UPDATE orders SET total = 0',
    });
    const longUpdate = holder({
      ...onLive,
      pid: 4444,
      mode: 'RowExclusiveLock',
      state: 'active',
      queryAgeSeconds: 30,
    });
    const prepared = holder({
      ...onLive,
      pid: null,
      gid: 'g',
      state: 'prepared',
      mode: 'RowExclusiveLock',
    });
    const verdict = lockVerdict([forUpdate, writer, longUpdate, prepared], { graceSeconds: 2 });
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((b) => b.holder)).toEqual([
      forUpdate,
      writer,
      longUpdate,
      prepared,
    ]);
    expect(verdict.blockers[0]!.reason).toBe(
      'idleInTransaction: pid 4242 (user alice, application "psql", from 10.0.0.7) has held RowShareLock on public.orders for 47 s in an open transaction that is idle: "SELECT * FROM orders WHERE id = 1 FOR UPDATE"; it may hold row locks the merge needs (our RowExclusiveLock does not conflict with its RowShareLock, but changing a row it locked waits until its transaction ends); end that transaction or set onMaxWait to terminate',
    );
    expect(verdict.blockers[3]!.reason).toContain(
      'has held RowExclusiveLock on public.orders for 47 s; it may hold row locks the merge needs',
    );
  });

  it('on a merge target, leaves plain readers, young transactions and short statements alone', () => {
    const onLive = { targetMode: 'RowExclusiveLock' } as const;
    const reader = holder({ ...onLive, mode: 'AccessShareLock' });
    const young = holder({ ...onLive, mode: 'RowExclusiveLock', transactionAgeSeconds: 0.5 });
    const busy = holder({
      ...onLive,
      mode: 'RowExclusiveLock',
      state: 'active',
      queryAgeSeconds: 0.1,
    });
    const queued = holder({ ...onLive, mode: 'RowShareLock', granted: false });
    // The table-level matrix itself is unchanged: row locks are the verdict's rule, not a conflict.
    const renamed = holder({ targetMode: 'ShareUpdateExclusiveLock', mode: 'RowExclusiveLock' });
    expect(lockVerdict([reader, young, busy, queued, renamed], { graceSeconds: 2 })).toEqual({
      safe: true,
      ignored: [
        { holder: reader, reason: 'does not conflict' },
        { holder: young, reason: 'younger than grace' },
        { holder: busy, reason: 'younger than grace' },
        { holder: queued, reason: 'does not conflict' },
        { holder: renamed, reason: 'does not conflict' },
      ],
    });
  });

  it("names the pipeline's own sessions and parallel queries, and never advises ending our own", () => {
    const own = holder({
      user: 'sync_pipeline',
      applicationName: '',
      clientAddr: null,
      ownSession: true,
      state: 'active',
      queryAgeSeconds: 40,
      query: 'CREATE INDEX ON staging (id)',
    });
    const parallel = holder({ parallelWorkers: 2, state: 'active', queryAgeSeconds: 40 });
    const verdict = lockVerdict([own, parallel]);
    expect(verdict.safe).toBe(false);
    if (verdict.safe) return;
    expect(verdict.blockers.map((b) => b.reason)).toEqual([
      `activeQuery: pid 4242 (user sync_pipeline, the pipeline's own role) has held AccessShareLock on public.orders for 47 s in a transaction whose current query has run for 40 s: "CREATE INDEX ON staging (id)"; it is one of the pipeline's own sessions (a statement of this or an earlier run still going), which are never terminated: wait for it to finish`,
      'activeQuery: pid 4242 (user alice, application "psql", from 10.0.0.7, leading 2 parallel workers) has held AccessShareLock on public.orders for 47 s in a transaction whose current query has run for 40 s: "SELECT * FROM orders"; wait for it, cancel it, or set onMaxWait to terminate',
    ]);
  });

  it("gives an active statement's age when its transaction's start is not known", () => {
    const verdict = lockVerdict([
      holder({ state: 'active', transactionAgeSeconds: null, queryAgeSeconds: 30 }),
    ]);
    if (verdict.safe) throw new Error('expected a blocker');
    expect(verdict.blockers[0]!.reason).toContain(
      'has held AccessShareLock on public.orders for at least 30 s in a transaction whose current query has run for 30 s',
    );
  });

  it('shortens long queries in messages and refuses a negative grace', () => {
    const verdict = lockVerdict([holder({ query: `SELECT ${'x, '.repeat(200)}1` })]);
    if (verdict.safe) throw new Error('expected a blocker');
    expect(verdict.blockers[0]!.reason).toMatch(/"SELECT (x, ){64}x…"; end that/);
    expect(() => lockVerdict([], { graceSeconds: -1 })).toThrowError(/graceSeconds/);
  });
});
