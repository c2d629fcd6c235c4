/**
 * Redshift's UNLOAD, emulated over a PostgreSQL source: the rows read in the caller's
 * transaction and written as Redshift writes them. The statement is parsed in unload-parse.ts,
 * the lines are formatted by the rules of unload-format.ts and land in the files of
 * unload-files.ts; this file runs it: it checks the destination (a destination that already has
 * files is refused unless ALLOWOVERWRITE), has PostgreSQL print the rows with COPY's text format
 * (read off the socket by copy-out.ts; Node only rewrites the escapes that differ, on byte
 * buffers, in unload-text.ts, and copies the bytes into the files) and, with PARALLEL ON, has
 * the slices read their own rows on sessions of their own (up to MAX_SLICE_SESSIONS), all on
 * one snapshot, as a cluster's slices unload theirs side by side: a query that only scans one
 * table is split by block ranges (unload-blocks.ts), so each row is read once.
 */

import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { CopyOut } from './copy-out';
import { pointAtShims } from './redshift-sql';
import { blockSplit } from './unload-blocks';
import {
  buildManifest,
  parseS3Location,
  type UnloadBucket,
  UnloadError,
  type UnloadedFile,
  UnloadFileWriter,
} from './unload-files';
import { copyStatement, describeColumns, literal } from './unload-format';
import type { UnloadStatement } from './unload-parse';
import { type UnloadLines, UnloadTextRewriter } from './unload-text';

/**
 * Streams one COPY's text output into `add` as UNLOAD's lines (unload-text.ts), waiting for
 * `pieceDone` after each piece of output (it writes what is due and reports progress).
 */
async function copyLines(
  copy: AsyncIterable<Buffer>,
  rewriter: UnloadTextRewriter,
  add: (lines: UnloadLines) => void,
  pieceDone: () => Promise<void>,
): Promise<void> {
  for await (const piece of copy) {
    for (const lines of rewriter.push(piece)) add(lines);
    await pieceDone();
  }
  if (!rewriter.atLineEnd) throw new UnloadError('the COPY output ended in the middle of a row');
}

/** A session of its own for one slice, connected to the source; ended by the caller. */
export type SliceConnection = pg.ClientBase & { end(): Promise<void> };

export interface UnloadEmulation {
  /** Slices of the emulated cluster. */
  readonly slices: number;
  /** Opens a session for a slice (its settings and snapshot are copied from the caller's). */
  readonly connect: () => Promise<SliceConnection>;
  /** Told the lines and bytes written so far, every PROGRESS_MS while it runs and once at the end. */
  readonly onProgress?: (progress: UnloadProgress) => void;
}

export interface UnloadProgress {
  /** The TO location. */
  readonly to: string;
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly done: boolean;
}

/** How often a long UNLOAD reports its progress. */
const PROGRESS_MS = 2000;

/**
 * At most this many sessions read for the slices (a cluster may have thousands of slices; the
 * stand-in's server takes a hundred connections by default): beyond it a session reads for
 * several slices.
 */
const MAX_SLICE_SESSIONS = 4;

/**
 * Whether other sessions can read what the caller's transaction reads: only in a transaction
 * block (outside one the UNLOAD is a transaction of its own, and an exported snapshot ends
 * with the statement that exports it; in a block now(), the block's start, comes before this
 * statement's), and not if it changed anything (its own changes are invisible to a snapshot's
 * importers, "Snapshot Synchronization Functions" in
 * https://www.postgresql.org/docs/current/functions-admin.html) or has temporary tables
 * (other sessions cannot see them).
 */
async function snapshotShareable(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ shareable: boolean }>(
    `SELECT pg_catalog.now() <> pg_catalog.statement_timestamp()
            AND pg_catalog.txid_current_if_assigned() IS NULL
            AND NOT EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())
            AS shareable`,
  );
  return rows[0]!.shareable;
}

/**
 * Settings under which every slice's session reads the query's rows in one order, so their
 * row numbers agree: no synchronized scans (a second scan of a big table starts where the
 * first one is, https://www.postgresql.org/docs/current/runtime-config-compatible.html) and
 * no parallel workers (a Gather returns rows as the workers deliver them).
 */
const SAME_ORDER: readonly [string, string][] = [
  ['synchronize_seqscans', 'off'],
  ['max_parallel_workers_per_gather', '0'],
];

/** Sets `settings` for the rest of the transaction; returns what they were. */
async function setLocally(
  client: pg.ClientBase,
  settings: readonly [string, string][],
): Promise<[string, string][]> {
  const { rows } = await client.query<{ name: string; was: string }>({
    text: `SELECT setting->>0 AS name, pg_catalog.current_setting(setting->>0) AS was,
                  pg_catalog.set_config(setting->>0, setting->>1, true)
             FROM pg_catalog.json_array_elements($1::pg_catalog.json) AS setting`,
    values: [JSON.stringify(settings)],
  });
  return rows.map((row) => [row.name, row.was]);
}

/**
 * Opens the further sessions the slices read on, each in a REPEATABLE READ transaction on the caller's
 * snapshot (pg_export_snapshot, SET TRANSACTION SNAPSHOT) with the caller's session settings,
 * so every slice reads the same rows and prints them alike, as a cluster's slices do.
 */
async function openSlices(
  client: pg.ClientBase,
  emulation: UnloadEmulation,
  sessionCount: number,
): Promise<{ sessions: SliceConnection[]; pids: number[] }> {
  const { rows } = await client.query<{ snapshot: string; settings: [string, string][] }>(
    `SELECT pg_catalog.pg_export_snapshot() AS snapshot,
            (SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(name, pg_catalog.current_setting(name))), '[]'::pg_catalog.json)
               FROM pg_catalog.pg_settings
              WHERE source = 'session' AND pg_catalog.left(name, 12) <> 'transaction_') AS settings`,
  );
  const { snapshot, settings } = rows[0]!;
  const sessions: SliceConnection[] = [];
  const pids: number[] = [];
  try {
    for (let opened = 1; opened < sessionCount; opened += 1) {
      const session = await emulation.connect();
      sessions.push(session);
      const pid = await session.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid');
      pids.push(pid.rows[0]!.pid);
      await session.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await session.query(`SET TRANSACTION SNAPSHOT ${literal(snapshot)}`);
      await setLocally(session, [...settings, ...SAME_ORDER]);
    }
  } catch (error) {
    await Promise.allSettled(sessions.map((session) => session.end()));
    throw error;
  }
  return { sessions, pids };
}

/**
 * Stops the slices' sessions: their statements are cancelled first (a backend whose client
 * went away notices only when it next sends, which a COPY does once it has filled its
 * buffer), then the sessions end, which ends their transactions (they only read).
 */
async function endSlices(
  emulation: UnloadEmulation,
  slices: { sessions: SliceConnection[]; pids: number[] },
  running: boolean,
): Promise<void> {
  if (running) {
    const canceller = await emulation.connect();
    try {
      await canceller.query(
        'SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.unnest($1::int[]) AS pid',
        [slices.pids],
      );
    } finally {
      await canceller.end();
    }
  }
  await Promise.allSettled(slices.sessions.map((session) => session.end()));
}

/**
 * Runs an UNLOAD on `client`, inside the transaction the caller opened (so every UNLOAD of a
 * batch reads one snapshot), and writes its files into `bucket`. Returns the files written.
 * With PARALLEL ON the slices read and write their own rows on sessions of their own (one per
 * slice, up to MAX_SLICE_SESSIONS, each reading its slices in turn), all on the caller's
 * snapshot, the first on `client` (so cancelling the caller's statement stops the UNLOAD); a
 * transaction whose snapshot cannot be shared reads every slice's rows on `client`, dealt in
 * turn.
 */
export async function runUnload(
  client: pg.ClientBase,
  statement: UnloadStatement,
  bucket: UnloadBucket,
  emulation: UnloadEmulation,
): Promise<UnloadedFile[]> {
  const { options } = statement;
  const location = parseS3Location(statement.to);
  const existing = await bucket.listKeys(location.bucket, location.keyPrefix);
  if (existing.length > 0 && !options.allowOverwrite) {
    // Redshift's own wording.
    throw new UnloadError(
      'Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.',
    );
  }
  const writer = new UnloadFileWriter(bucket, location, {
    parallel: options.parallel,
    maxFileSizeBytes: options.maxFileSizeBytes,
    slices: emulation.slices,
  });
  const setting = await client.query<{ digits: string }>(
    `SELECT current_setting('extra_float_digits') AS digits`,
  );
  const extraFloatDigits = Number(setting.rows[0]!.digits);
  const query = pointAtShims(statement.query);
  const described = await client.query({
    text: `SELECT * FROM (\n${query}\n) AS unloaded LIMIT 0`,
    rowMode: 'array',
  });
  const columns = await describeColumns(client, described.fields, extraFloatDigits);
  const count = writer.streamCount;
  const started = performance.now();
  let reported = started;
  let rows = 0;
  let bytes = 0;
  const report = (done: boolean) => {
    const now = performance.now();
    if (!emulation.onProgress || (!done && now - reported < PROGRESS_MS)) return;
    reported = now;
    emulation.onProgress({ to: statement.to, rows, bytes, seconds: (now - started) / 1000, done });
  };
  /** Adds lines to slice `slice`'s files, or with null deals them over the slices. */
  const add = (slice: number | null) => (lines: UnloadLines) => {
    writer.addLines(slice, lines.bytes, lines.ends);
    rows += lines.ends.length;
    bytes += lines.bytes.length;
  };
  /** Writes what is due of `slices`' files, and reports. */
  const pieceDone = (slices: readonly number[]) => async () => {
    for (const slice of slices) if (writer.flushDue(slice)) await writer.flush(slice);
    report(false);
  };
  const rewriter = () => new UnloadTextRewriter(columns, options);
  if (count === 1 || !(await snapshotShareable(client))) {
    const copy = client.query(new CopyOut(copyStatement(query, columns, options)));
    const all = Array.from({ length: count }, (_, slice) => slice);
    await copyLines(copy, rewriter(), add(count === 1 ? 0 : null), pieceDone(all));
  } else {
    const previous = await setLocally(client, SAME_ORDER);
    const split = await blockSplit(client, query);
    /** Slice `slice`'s COPY: its blocks of the one table, or its rows of the query's. */
    const sliceCopy = (slice: number) => {
      if (!split) return copyStatement(query, columns, options, { slice, slices: count });
      const first = (s: number) => Math.ceil((s * split.blocks) / count);
      const range = split.rangeQuery(first(slice), slice === count - 1 ? null : first(slice + 1));
      return copyStatement(range, columns, options);
    };
    const sessions = Math.min(count, MAX_SLICE_SESSIONS);
    const others = await openSlices(client, emulation, sessions);
    let stopping: Promise<void> | null = null;
    // The first failure is the cause; the slices it ended fail after it.
    const failures: unknown[] = [];
    try {
      const reads = [client, ...others.sessions].map(async (session, index) => {
        try {
          // This session's slices, one after the other.
          for (let slice = index; slice < count; slice += sessions) {
            const copy = session.query(new CopyOut(sliceCopy(slice)));
            await copyLines(copy, rewriter(), add(slice), pieceDone([slice]));
          }
        } catch (error) {
          // One slice failed (or was cancelled, on the caller's session): the others stop too.
          failures.push(error);
          stopping ??= endSlices(emulation, others, true);
          await stopping;
        }
      });
      await Promise.all(reads);
      if (failures.length > 0) throw failures[0];
    } finally {
      await (stopping ?? endSlices(emulation, others, false));
    }
    await setLocally(client, previous);
  }
  const files = await writer.finish();
  report(true);
  if (options.manifest !== 'none') {
    const manifestKey = `${location.keyPrefix}manifest`;
    await bucket.createObject(location.bucket, manifestKey);
    await bucket.appendToObject(
      location.bucket,
      manifestKey,
      Buffer.from(buildManifest(files, columns, options.manifest), 'utf8'),
    );
  }
  return files;
}
