/**
 * The regular interval of a range-partitioned table, read from its bounds as pg_get_expr
 * prints them (in UTC), and the names new partitions get.
 */
import { describe, expect, it } from 'vitest';
import {
  newPartitionName,
  nextStart,
  parseRangeBound,
  regularInterval,
} from '../lambdas/core/partitions/interval';
import type { LivePartition } from '../lambdas/core/partitions/layout';

const parent = { schema: 'public', name: 'events' };

function partition(name: string, bound: string): LivePartition {
  return {
    partition: { schema: 'public', name },
    bound,
    isDefault: bound === 'DEFAULT',
    detachPending: false,
    subPartitioned: false,
  };
}

const range = (from: string, to: string) => `FOR VALUES FROM ('${from}') TO ('${to}')`;

describe('regularInterval', () => {
  it('finds days and months of date, timestamp and timestamptz keys', () => {
    expect(
      regularInterval([
        partition('events_2024_01_02', range('2024-01-02', '2024-01-03')),
        partition('events_2024_01_01', range('2024-01-01', '2024-01-02')),
      ]),
    ).toEqual({
      unit: 'day',
      suffix: '',
      template: { schema: 'public', name: 'events_2024_01_02' },
      templateFrom: '2024-01-02',
    });
    expect(
      regularInterval([
        partition('s_202312', range('2023-12-01 00:00:00+00', '2024-01-01 00:00:00+00')),
        partition('s_202402', range('2024-02-01 00:00:00+00', '2024-03-01 00:00:00+00')),
      ]),
    ).toMatchObject({ unit: 'month', suffix: ' 00:00:00+00', templateFrom: '2024-02-01' });
  });

  it('finds none for mixed spans, uneven or non-midnight bounds, a DEFAULT, or other kinds of bound', () => {
    const day = partition('a', range('2024-01-01', '2024-01-02'));
    expect(regularInterval([day, partition('b', range('2024-02-01', '2024-03-01'))])).toBeNull();
    expect(regularInterval([partition('a', range('2024-01-01', '2024-01-03'))])).toBeNull();
    expect(regularInterval([partition('a', range('2024-01-15', '2024-02-15'))])).toBeNull();
    expect(
      regularInterval([partition('a', range('2024-01-01 06:00:00', '2024-01-02 06:00:00'))]),
    ).toBeNull();
    expect(regularInterval([day, partition('other', 'DEFAULT')])).toBeNull();
    expect(regularInterval([partition('a', "FOR VALUES IN ('emea')")])).toBeNull();
    expect(
      regularInterval([partition('a', "FOR VALUES FROM (MINVALUE) TO ('2024-01-01')")]),
    ).toBeNull();
    expect(regularInterval([])).toBeNull();
  });
});

describe('nextStart and parseRangeBound', () => {
  it('steps over month and year ends and leap days', () => {
    expect(nextStart('2024-02-28', 'day')).toBe('2024-02-29');
    expect(nextStart('2024-12-31', 'day')).toBe('2025-01-01');
    expect(nextStart('2024-12-01', 'month')).toBe('2025-01-01');
    expect(parseRangeBound(range('2024-01-01', '2024-01-02'))).toEqual({
      from: '2024-01-01',
      to: '2024-01-02',
    });
    expect(parseRangeBound('DEFAULT')).toBeNull();
  });
});

describe('newPartitionName', () => {
  const interval = (name: string, templateFrom: string, unit: 'day' | 'month' = 'day') => ({
    unit,
    suffix: '',
    template: { schema: 'public', name },
    templateFrom,
  });

  it("spells the new start as the template's name spells its own", () => {
    expect(
      newPartitionName(parent, interval('events_2024_01_02', '2024-01-02'), '2024-01-05'),
    ).toBe('events_2024_01_05');
    expect(newPartitionName(parent, interval('events_20240102', '2024-01-02'), '2024-01-05')).toBe(
      'events_20240105',
    );
    expect(
      newPartitionName(parent, interval('sales_p2024_02', '2024-02-01', 'month'), '2024-03-01'),
    ).toBe('sales_p2024_03');
  });

  it('falls back to <parent>_<stamp> when the template does not show its start', () => {
    expect(newPartitionName(parent, interval('events_latest', '2024-01-02'), '2024-01-05')).toBe(
      'events_20240105',
    );
    expect(
      newPartitionName(parent, interval('events_feb', '2024-02-01', 'month'), '2024-03-01'),
    ).toBe('events_202403');
  });
});
