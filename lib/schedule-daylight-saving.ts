/**
 * Refuses, at synth time, a schedule whose cron time of day falls in an hour that daylight
 * saving skips or repeats in its time zone. EventBridge Scheduler skips an invocation whose
 * local time does not exist on the spring-forward day
 * (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html, "Daylight
 * saving time"), so a daily run at 02:30 Europe/Berlin silently does not happen once a year;
 * in the repeated hour of the fall-back day the time exists twice. Transitions are computed
 * with Intl.DateTimeFormat for the IANA zone, so no time-zone table is kept here.
 */

/** How many years ahead, from the current one, transitions are looked for. */
const YEARS_AHEAD = 3;
const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/** The UTC offset of `zone` at `instantMs`, in minutes (east positive). */
function offsetMinutes(formatter: Intl.DateTimeFormat, instantMs: number): number {
  const parts = Object.fromEntries(
    formatter.formatToParts(new Date(instantMs)).map((part) => [part.type, part.value]),
  );
  const local = Date.UTC(
    Number(parts.year),
    Number(parts.month) - 1,
    Number(parts.day),
    Number(parts.hour) % 24,
    Number(parts.minute),
  );
  return Math.round((local - Math.floor(instantMs / MINUTE_MS) * MINUTE_MS) / MINUTE_MS);
}

/** A local wall-clock span a transition skips or repeats: [from, to) in minutes of `date`. */
interface Anomaly {
  readonly kind: 'skipped' | 'repeated';
  /** The local date, YYYY-MM-DD. */
  readonly date: string;
  readonly fromMinute: number;
  readonly toMinute: number;
}

/** Every daylight-saving transition of `zone` from `startMs` for `years` years. */
export function daylightSavingAnomalies(zone: string, startMs: number, years: number): Anomaly[] {
  const formatter = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
  });
  const anomalies: Anomaly[] = [];
  const endMs = startMs + years * 366 * DAY_MS;
  let before = offsetMinutes(formatter, startMs);
  for (let dayMs = startMs + DAY_MS; dayMs <= endMs; dayMs += DAY_MS) {
    const after = offsetMinutes(formatter, dayMs);
    if (after === before) continue;
    // The transition is within the last day: find its minute by bisection.
    let low = dayMs - DAY_MS;
    let high = dayMs;
    while (high - low > MINUTE_MS) {
      const middle = low + Math.floor((high - low) / 2 / MINUTE_MS) * MINUTE_MS;
      if (offsetMinutes(formatter, middle) === before) low = middle;
      else high = middle;
    }
    // Local wall clock just before the change, in the old offset.
    const localMs = high + before * MINUTE_MS;
    const local = new Date(localMs);
    const fromMinute = local.getUTCHours() * 60 + local.getUTCMinutes();
    anomalies.push({
      kind: after > before ? 'skipped' : 'repeated',
      date: local.toISOString().slice(0, 10),
      // Spring forward skips [t, t + delta); fall back repeats [t - delta, t).
      fromMinute: after > before ? fromMinute : fromMinute - (before - after),
      toMinute: after > before ? fromMinute + (after - before) : fromMinute,
    });
    before = after;
  }
  return anomalies;
}

/** The values a cron field of plain numbers (`5`, `1,15`, `1-3`) allows; null for `*`, `/` and the like. */
function fieldValues(field: string): number[] | null {
  const values: number[] = [];
  for (const item of field.split(',')) {
    const range = /^(\d+)(?:-(\d+))?$/.exec(item);
    if (!range) return null;
    const from = Number(range[1]);
    const to = range[2] === undefined ? from : Number(range[2]);
    for (let value = from; value <= to; value++) values.push(value);
  }
  return values;
}

function clock(minuteOfDay: number): string {
  const hours = Math.floor(minuteOfDay / 60);
  const minutes = minuteOfDay % 60;
  return `${String(hours).padStart(2, '0')}:${String(minutes).padStart(2, '0')}`;
}

/**
 * Throws when a `cron(...)` expression's time of day falls in a skipped or repeated local
 * hour of `timeZone` in the next few years, whatever its day fields say (they are not
 * evaluated). `rate(...)`, `at(...)` and cron times given with `*` or `/` are not checked.
 */
export function checkScheduleAgainstDaylightSaving(
  expression: string,
  timeZone: string,
  options: {
    /** What the error calls the expression: the config field or the construct prop. */
    readonly field: string;
    readonly nowMs?: number;
  },
): void {
  const nowMs = options.nowMs ?? Date.now();
  const cron = /^cron\((.*)\)$/.exec(expression.trim());
  if (!cron) return;
  const [minuteField, hourField] = cron[1]!.trim().split(/\s+/);
  const minutes = fieldValues(minuteField ?? '');
  const hours = fieldValues(hourField ?? '');
  if (!minutes || !hours) return;
  const times = hours.flatMap((hour) => minutes.map((minute) => hour * 60 + minute));
  const startOfYear = Date.UTC(new Date(nowMs).getUTCFullYear(), 0, 1);
  const hits = daylightSavingAnomalies(timeZone, startOfYear, YEARS_AHEAD + 1).filter((anomaly) =>
    times.some((time) => time >= anomaly.fromMinute && time < anomaly.toMinute),
  );
  if (hits.length === 0) return;
  const described = hits
    .map(
      (hit) =>
        `${hit.date} (${clock(hit.fromMinute)}-${clock(hit.toMinute)} ${hit.kind === 'skipped' ? 'does not exist' : 'happens twice'})`,
    )
    .join(', ');
  throw new Error(
    `${options.field} ${JSON.stringify(expression)} in ${timeZone} falls in a daylight-saving change: ${described}. EventBridge Scheduler skips a run whose local time does not exist, and a repeated hour is ambiguous. Pick a time outside 01:00-03:59 local, e.g. cron(30 4 * * ? *).`,
  );
}
