/**
 * The "regular interval" of a range-partitioned table, read from its partitions' bounds
 * (pure): every partition holds one day, or every one holds one calendar month, of a date,
 * timestamp or timestamptz column (in UTC: the bounds are read with timezone UTC). Then a
 * missing day or month can be created like its neighbours; anything else is left to a person.
 */
import type { QualifiedName } from '../identifiers';
import type { LivePartition } from './layout';

export type PartitionUnit = 'day' | 'month';

export interface RangeBound {
  readonly from: string;
  readonly to: string;
}

/** A day, optionally followed by midnight (timestamp) and UTC's offset (timestamptz). */
const BOUND_VALUE = /^(\d{4})-(\d{2})-(\d{2})( 00:00:00(\+00)?)?$/;
const RANGE_BOUND = /^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$/;

/** `FOR VALUES FROM ('a') TO ('b')` as pg_get_expr prints it; null for anything else. */
export function parseRangeBound(bound: string): RangeBound | null {
  const match = RANGE_BOUND.exec(bound);
  return match ? { from: match[1]!, to: match[2]! } : null;
}

interface Day {
  readonly year: number;
  readonly month: number;
  readonly day: number;
  /** What follows the day in the bound's text: '', ' 00:00:00' or ' 00:00:00+00'. */
  readonly suffix: string;
}

function parseDay(value: string): Day | null {
  const match = BOUND_VALUE.exec(value);
  if (!match) return null;
  return {
    year: Number(match[1]),
    month: Number(match[2]),
    day: Number(match[3]),
    suffix: match[4] ?? '',
  };
}

function dayText(year: number, month: number, day: number): string {
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.toISOString().slice(0, 10);
}

/** The start of the next day or month after `start` ('YYYY-MM-DD'). */
export function nextStart(start: string, unit: PartitionUnit): string {
  const [year, month, day] = start.split('-').map(Number) as [number, number, number];
  return unit === 'day' ? dayText(year, month, day + 1) : dayText(year, month + 1, 1);
}

export interface RegularInterval {
  readonly unit: PartitionUnit;
  /** How the bounds print a start after its day ('', ' 00:00:00', ' 00:00:00+00'). */
  readonly suffix: string;
  /** The partition with the latest range: new partitions are made like it. */
  readonly template: QualifiedName;
  readonly templateFrom: string;
}

/**
 * The interval every partition's range spans, when they all span one day or all one month,
 * starting at midnight (UTC); null when there is none, or a DEFAULT partition (which takes the
 * rows of any range), or no partition at all.
 */
export function regularInterval(partitions: readonly LivePartition[]): RegularInterval | null {
  if (partitions.length === 0 || partitions.some((partition) => partition.isDefault)) return null;
  const units = new Set<PartitionUnit>();
  const suffixes = new Set<string>();
  let latest: { partition: QualifiedName; from: string } | null = null;
  for (const { partition, bound } of partitions) {
    const range = parseRangeBound(bound);
    const from = range && parseDay(range.from);
    const to = range && parseDay(range.to);
    if (!from || !to || from.suffix !== to.suffix) return null;
    const start = dayText(from.year, from.month, from.day);
    const end = dayText(to.year, to.month, to.day);
    if (end === nextStart(start, 'day')) units.add('day');
    else if (from.day === 1 && end === nextStart(start, 'month')) units.add('month');
    else return null;
    suffixes.add(from.suffix);
    if (!latest || start > latest.from) latest = { partition, from: start };
  }
  if (units.size !== 1 || suffixes.size !== 1 || !latest) return null;
  return {
    unit: [...units][0]!,
    suffix: [...suffixes][0]!,
    template: latest.partition,
    templateFrom: latest.from,
  };
}

/** The ways a partition's name may spell the start of its range, most specific first. */
const NAME_FORMATS: readonly ((year: string, month: string, day: string) => string)[] = [
  (y, m, d) => `${y}_${m}_${d}`,
  (y, m, d) => `${y}${m}${d}`,
  (y, m, d) => `${y}-${m}-${d}`,
  (y, m) => `${y}_${m}`,
  (y, m) => `${y}${m}`,
  (y, m) => `${y}-${m}`,
];

/**
 * The name of a new partition starting at `start`, spelled as the template's name spells its
 * own start (`events_2024_01_03` after `events_2024_01_02`, `sales_202402` after
 * `sales_202401`); `<parent>_<YYYYMMDD>` (or `_<YYYYMM>`) when the template's name does not show
 * its start.
 */
export function newPartitionName(
  parent: QualifiedName,
  interval: RegularInterval,
  start: string,
): string {
  const [ty, tm, td] = interval.templateFrom.split('-') as [string, string, string];
  const [ny, nm, nd] = start.split('-') as [string, string, string];
  for (const format of NAME_FORMATS) {
    const old = format(ty, tm, td);
    const at = interval.template.name.lastIndexOf(old);
    if (at !== -1) {
      const name = `${interval.template.name.slice(0, at)}${format(ny, nm, nd)}${interval.template.name.slice(at + old.length)}`;
      if (Buffer.byteLength(name) <= 63) return name;
    }
  }
  const stamp = interval.unit === 'day' ? `${ny}${nm}${nd}` : `${ny}${nm}`;
  return `${parent.name.slice(0, 63 - stamp.length - 1)}_${stamp}`;
}
