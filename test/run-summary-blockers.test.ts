/**
 * Which blockers and ended sessions the run summary lists under each table: those on the table
 * itself, and those on no table of the run (a view, say), never another table's. Names are
 * compared as the summary writes them, quoted where they need it.
 */
import { describe, expect, it } from 'vitest';
import { describeBlocker, endedSession } from '../lambdas/pipeline/state';
import { blockersFor, endedFor } from '../lambdas/pipeline/summary';
import { holder } from './support/lock-holders';

const targets = ['public."Orders 2024"', 'public.lines'];

describe('the summary lists a blocker under the table it blocks', () => {
  it('matches a table whose name needs quotes, and only that one', () => {
    const onOrders = describeBlocker(
      holder({ relation: { schema: 'public', name: 'Orders 2024' } }),
      'idle in transaction',
      'fail',
    );
    const onView = describeBlocker(
      holder({ pid: 7, relation: { schema: 'public', name: 'order_view' } }),
      'reads a view of the table',
      'fail',
    );
    expect(onOrders.relation).toBe('public."Orders 2024"');
    expect(blockersFor('public."Orders 2024"', targets, [onOrders, onView])).toEqual([
      onOrders,
      onView,
    ]);
    expect(blockersFor('public.lines', targets, [onOrders, onView])).toEqual([onView]);
  });

  it('does the same for the sessions onMaxWait ended', () => {
    const ended = endedSession({
      pid: 42,
      gid: null,
      user: 'alice',
      applicationName: 'psql',
      clientAddr: null,
      blockerClass: 'idleInTransaction',
      transactionAgeSeconds: 40,
      query: null,
      relations: [{ schema: 'public', name: 'Orders 2024' }],
      terminated: true,
      outcome: 'terminated',
      reason: null,
      advice: null,
    });
    expect(endedFor('public."Orders 2024"', targets, [ended])).toEqual([ended]);
    expect(endedFor('public.lines', targets, [ended])).toEqual([]);
  });
});
