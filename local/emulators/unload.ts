/**
 * Redshift's UNLOAD, emulated over a PostgreSQL source: the rows read in the caller's
 * transaction and written as Redshift writes them. The statement is parsed in unload-parse.ts,
 * the lines are formatted by the rules of unload-format.ts and land in the files of
 * unload-files.ts; this file runs it: it checks the destination (a destination that already has
 * files is refused unless ALLOWOVERWRITE), streams the lines out of PostgreSQL with binary COPY
 * (Node only strips the framing and copies the bytes into the files) and, with PARALLEL ON,
 * has the slices read their own rows on sessions of their own (up to MAX_SLICE_SESSIONS), all
 * on one snapshot, as a cluster's slices unload theirs side by side.
 */

import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { pointAtShims } from './redshift-sql';
import {
  buildManifest,
  parseS3Location,
  type UnloadBucket,
  UnloadError,
  type UnloadedFile,
  UnloadFileWriter,
} from './unload-files';
import {
  describeColumns,
  floatText,
  type LineFormat,
  type LinePart,
  lineQuery,
  literal,
} from './unload-format';
import type { UnloadStatement } from './unload-parse';

/** The start of binary COPY output: signature, flags, header extension length (sql-copy.html, "Binary Format"). */
const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const COPY_HEADER_BYTES = COPY_SIGNATURE.length + 8;

/** Where a stream of lines goes: a slice's own files, or dealt over the slices in turn. */
interface LineSink {
  /** One line; `slice` is the slice it is for, when its session reads for several. */
  add(source: Buffer, start: number, end: number, slice: number | null): void;
  /** After each piece of COPY output: writes what is due, reports progress. */
  pieceDone(): Promise<void>;
}

/**
 * Reads binary COPY output (https://www.postgresql.org/docs/current/sql-copy.html, "Binary
 * Format": a header, then per row a 16-bit field count and each field as a 32-bit length, -1
 * for NULL, and its bytes; -1 as the count ends it) and hands each row's line to `sink`.
 * A row with only text is copied straight from the network's buffer.
 */
async function writeLines(
  copy: AsyncIterable<Buffer>,
  parts: readonly LinePart[],
  format: LineFormat,
  sink: LineSink,
): Promise<void> {
  const nullAs = Buffer.from(format.nullAs, 'utf8');
  const onlyText = parts.length === 1;
  // [slice, text]: a slice number of 4 bytes, then the line.
  const slicedText = parts.length === 2 && parts[0]!.kind === 'slice';
  let rest: Buffer | null = null;
  let header = true;
  for await (const chunk of copy) {
    const data: Buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
    let at = 0;
    if (header) {
      if (data.length < COPY_HEADER_BYTES) {
        rest = data;
        continue;
      }
      if (!data.subarray(0, COPY_SIGNATURE.length).equals(COPY_SIGNATURE)) {
        throw new UnloadError('the COPY output does not start with the binary format signature');
      }
      const extension = data.readInt32BE(COPY_SIGNATURE.length + 4);
      if (data.length < COPY_HEADER_BYTES + extension) {
        rest = data;
        continue;
      }
      at = COPY_HEADER_BYTES + extension;
      header = false;
    }
    while (at + 2 <= data.length) {
      const count = data.readInt16BE(at);
      if (count === -1) {
        at += 2;
        break;
      }
      if (onlyText) {
        if (at + 6 > data.length) break;
        const length = data.readInt32BE(at + 2);
        if (at + 6 + length > data.length) break;
        sink.add(data, at + 6, at + 6 + length, null);
        at += 6 + length;
        continue;
      }
      if (slicedText) {
        if (at + 14 > data.length) break;
        const length = data.readInt32BE(at + 10);
        if (at + 14 + length > data.length) break;
        sink.add(data, at + 14, at + 14 + length, data.readInt32BE(at + 6));
        at += 14 + length;
        continue;
      }
      let end = at + 2;
      const pieces: Buffer[] = [];
      let slice: number | null = null;
      let read = 0;
      for (const part of parts) {
        if (end + 4 > data.length) break;
        const length = data.readInt32BE(end);
        const start = end + 4;
        end = start + Math.max(length, 0);
        if (end > data.length) break;
        read += 1;
        if (part.kind === 'slice') slice = data.readInt32BE(start);
        else if (part.kind === 'text') pieces.push(data.subarray(start, end));
        else if (length === -1) pieces.push(nullAs);
        else {
          const float4 = length === 4;
          const number = float4 ? data.readFloatBE(start) : data.readDoubleBE(start);
          pieces.push(Buffer.from(floatText(number, part.column.significantDigits!, float4)));
        }
      }
      if (read < parts.length || end > data.length) break;
      const line = Buffer.concat(pieces);
      sink.add(line, 0, line.length, slice);
      at = end;
    }
    rest = at < data.length ? data.subarray(at) : null;
    await sink.pieceDone();
  }
  if (header || rest !== null) {
    throw new UnloadError('the COPY output ended in the middle of a row');
  }
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
 * slice, up to MAX_SLICE_SESSIONS), all on the caller's snapshot, the first on `client` (so
 * cancelling the caller's statement stops the UNLOAD); a transaction whose snapshot cannot be shared reads every slice's rows on
 * `client`, dealt in turn.
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
  /** Where a session's lines go: its slices' own files (`session`), or dealt over them all. */
  const sinkFor = (session: number | null, sessions: number): LineSink => ({
    add: (source, start, end, slice) => {
      if (slice === null) writer.add(source, start, end);
      else writer.addTo(slice, source, start, end);
      rows += 1;
      bytes += end - start;
    },
    pieceDone: async () => {
      for (let s = session ?? 0; s < count; s += session === null ? 1 : sessions) {
        if (writer.flushDue(s)) await writer.flush(s);
      }
      report(false);
    },
  });
  if (count === 1 || !(await snapshotShareable(client))) {
    const lines = lineQuery(query, columns, options);
    const copy = client.query(copyStreams.to(`COPY (${lines.sql}) TO STDOUT (FORMAT binary)`));
    await writeLines(copy, lines.parts, options, sinkFor(null, 1));
  } else {
    const previous = await setLocally(client, SAME_ORDER);
    const sessions = Math.min(count, MAX_SLICE_SESSIONS);
    const others = await openSlices(client, emulation, sessions);
    let stopping: Promise<void> | null = null;
    // The first failure is the cause; the slices it ended fail after it.
    const failures: unknown[] = [];
    try {
      const slices = [client, ...others.sessions].map(async (session, index) => {
        const lines = lineQuery(query, columns, options, { index, sessions, slices: count });
        const copy = session.query(copyStreams.to(`COPY (${lines.sql}) TO STDOUT (FORMAT binary)`));
        try {
          await writeLines(copy, lines.parts, options, sinkFor(index, sessions));
        } catch (error) {
          // One slice failed (or was cancelled, on the caller's session): the others stop too.
          failures.push(error);
          stopping ??= endSlices(emulation, others, true);
          await stopping;
        }
      });
      await Promise.all(slices);
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
