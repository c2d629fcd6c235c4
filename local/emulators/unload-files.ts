/**
 * The files UNLOAD writes, laid out as Redshift lays them out (docs.aws.amazon.com/redshift/
 * latest/dg/r_UNLOAD.html):
 * - one or more files per slice, `<prefix><slice:4>_part_<part:2>`, rows dealt round-robin
 *   over the slices, so a slice without rows leaves a 0-byte file; a file is closed before it
 *   would pass MAXFILESIZE; with PARALLEL OFF one series `<prefix>000`, `<prefix>001`, ...;
 * - `<prefix>manifest` listing every file (with VERBOSE: sizes, record counts, the columns).
 * Only bytes and names are handled here, through the UnloadBucket port (a local folder or the
 * S3 fake), so the layout is tested without a database.
 */

import { SyncError } from '../../lambdas/core/errors';
import type { UnloadColumn } from './unload-format';
import type { ManifestKind } from './unload-parse';

/** An UNLOAD that Redshift would refuse when it runs (its destination is not empty, ...). */
export class UnloadError extends SyncError {}

/** The folder (or bucket) UNLOAD writes into. */
export interface UnloadBucket {
  listKeys(bucket: string, prefix: string): Promise<string[]>;
  /** Creates the object empty, replacing any object of that key. */
  createObject(bucket: string, key: string): Promise<void>;
  appendToObject(bucket: string, key: string, bytes: Buffer): Promise<void>;
}

/** One file UNLOAD wrote. */
export interface UnloadedFile {
  readonly url: string;
  readonly key: string;
  readonly bytes: number;
  readonly records: number;
}

/** Splits `s3://bucket/name-prefix` into bucket and key prefix. */
export function parseS3Location(url: string): { bucket: string; keyPrefix: string } {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) {
    throw new UnloadError(`${JSON.stringify(url)} is not an s3://bucket/key location`);
  }
  return { bucket: match[1]!, keyPrefix: match[2]! };
}

/** Lines are gathered in blocks of this size (or one line, if longer) before they are written. */
const BLOCK_BYTES = 1024 * 1024;
/** Once this much waits in blocks, the caller should flush. */
const FLUSH_BYTES = 8 * 1024 * 1024;

interface OpenFile {
  readonly key: string;
  bytes: number;
  records: number;
  created: boolean;
  /** Pieces waiting to be written, then `block` from `blockStart` up to `fill`. */
  readonly full: Buffer[];
  block: Buffer | null;
  blockStart: number;
  fill: number;
}

/**
 * Writes lines into UNLOAD's files: dealt round-robin over the slices (or one series with
 * PARALLEL OFF), each file closed before it would pass the size limit. `add` copies a line's
 * bytes into memory and returns at once; `flush` hands what waits to the bucket, file by file
 * in order (call it when `flushDue`), `finish` writes the rest.
 */
export class UnloadFileWriter {
  private readonly streams: OpenFile[][];
  private readonly waiting: number[];
  private row = 0;

  constructor(
    private readonly bucket: UnloadBucket,
    private readonly location: { bucket: string; keyPrefix: string },
    private readonly options: { parallel: boolean; maxFileSizeBytes: number; slices: number },
  ) {
    if (!Number.isInteger(options.slices) || options.slices < 1) {
      throw new UnloadError(`the emulated cluster needs at least one slice; got ${options.slices}`);
    }
    this.streams = Array.from({ length: options.parallel ? options.slices : 1 }, () => []);
    this.waiting = this.streams.map(() => 0);
  }

  /** How many series of files there are: one per slice, or one with PARALLEL OFF. */
  get streamCount(): number {
    return this.streams.length;
  }

  private fileKey(stream: number, part: number): string {
    if (!this.options.parallel) return `${this.location.keyPrefix}${String(part).padStart(3, '0')}`;
    return `${this.location.keyPrefix}${String(stream).padStart(4, '0')}_part_${String(part).padStart(2, '0')}`;
  }

  private open(stream: number): OpenFile {
    const files = this.streams[stream]!;
    const file: OpenFile = {
      key: this.fileKey(stream, files.length),
      bytes: 0,
      records: 0,
      created: false,
      full: [],
      block: null,
      blockStart: 0,
      fill: 0,
    };
    files.push(file);
    return file;
  }

  /** True once enough of `stream` waits in memory that the caller should flush it. */
  flushDue(stream: number): boolean {
    return this.waiting[stream]! >= FLUSH_BYTES;
  }

  /** Adds one line, the bytes `start` to `end` of `source` (LF included), to the next slice in turn. */
  add(source: Buffer, start = 0, end = source.length): void {
    this.addTo(this.row % this.streams.length, source, start, end);
    this.row += 1;
  }

  /** Adds one line to `stream`'s files (a slice that reads its own rows). */
  addTo(stream: number, source: Buffer, start = 0, end = source.length): void {
    const length = end - start;
    let file = this.streams[stream]!.at(-1) ?? this.open(stream);
    if (file.bytes > 0 && file.bytes + length > this.options.maxFileSizeBytes) {
      file = this.open(stream);
    }
    if (file.block === null || file.fill + length > file.block.length) {
      if (file.block !== null && file.fill > file.blockStart) {
        file.full.push(file.block.subarray(file.blockStart, file.fill));
      }
      file.block = Buffer.allocUnsafe(Math.max(BLOCK_BYTES, length));
      file.blockStart = 0;
      file.fill = 0;
    }
    source.copy(file.block, file.fill, start, end);
    file.fill += length;
    file.bytes += length;
    file.records += 1;
    this.waiting[stream]! += length;
  }

  /**
   * Adds whole lines, `source` up to each of `ends` in turn, to `stream`'s files, or with
   * `stream` null deals them over the slices in turn, as `add` does. Lines that go into one
   * file together are kept as one piece of `source` (not copied), so `source` must not change
   * afterwards.
   */
  addLines(stream: number | null, source: Buffer, ends: readonly number[]): void {
    let at = 0;
    let line = 0;
    while (line < ends.length) {
      if (stream === null) {
        this.add(source, at, ends[line]!);
        at = ends[line]!;
        line += 1;
        continue;
      }
      let file = this.streams[stream]!.at(-1) ?? this.open(stream);
      // The lines that fit into the file; the first always fits into an empty file.
      let next = line;
      while (
        next < ends.length &&
        (file.bytes + ends[next]! - at <= this.options.maxFileSizeBytes ||
          (next === line && file.bytes === 0))
      ) {
        next += 1;
      }
      if (next === line) {
        file = this.open(stream);
        continue;
      }
      if (file.block !== null && file.fill > file.blockStart) {
        file.full.push(file.block.subarray(file.blockStart, file.fill));
        file.blockStart = file.fill;
      }
      const end = ends[next - 1]!;
      file.full.push(source.subarray(at, end));
      file.bytes += end - at;
      file.records += next - line;
      this.waiting[stream]! += end - at;
      at = end;
      line = next;
    }
  }

  /** Writes the waiting lines of `stream`'s files, creating each file the first time. */
  async flush(stream: number): Promise<void> {
    for (const file of this.streams[stream]!) {
      if (!file.created) {
        await this.bucket.createObject(this.location.bucket, file.key);
        file.created = true;
      }
      if (file.fill === file.blockStart && file.full.length === 0) continue;
      const pieces = file.block
        ? [...file.full, file.block.subarray(file.blockStart, file.fill)]
        : file.full;
      await this.bucket.appendToObject(this.location.bucket, file.key, Buffer.concat(pieces));
      file.full.length = 0;
      // The bucket is done with the block once appendToObject returns: it is filled anew.
      file.blockStart = 0;
      file.fill = 0;
    }
    this.waiting[stream] = 0;
  }

  /** Writes what waits, creates the empty files of slices without rows, and lists them all. */
  async finish(): Promise<UnloadedFile[]> {
    this.streams.forEach((files, stream) => {
      if (files.length === 0) this.open(stream);
    });
    for (let stream = 0; stream < this.streams.length; stream += 1) await this.flush(stream);
    return this.streams.flat().map((file) => ({
      url: `s3://${this.location.bucket}/${file.key}`,
      key: file.key,
      bytes: file.bytes,
      records: file.records,
    }));
  }
}

/** The manifest UNLOAD writes beside its files, laid out as Redshift lays it out. */
export function buildManifest(
  files: readonly UnloadedFile[],
  columns: readonly UnloadColumn[],
  kind: Exclude<ManifestKind, 'none'>,
): string {
  if (kind === 'plain') {
    const entries = files.map((file) => `    {"url":${JSON.stringify(file.url)}}`);
    return `{\n  "entries": [\n${entries.join(',\n')}\n  ]\n}\n`;
  }
  const entries = files.map(
    (file) =>
      `    {"url":${JSON.stringify(file.url)}, "meta": { "content_length": ${file.bytes}, "record_count": ${file.records} }}`,
  );
  const elements = columns.map(
    (column) =>
      `      {"name": ${JSON.stringify(column.name)}, "type": { "base": ${JSON.stringify(column.type)} }}`,
  );
  const totalBytes = files.reduce((sum, file) => sum + file.bytes, 0);
  const totalRecords = files.reduce((sum, file) => sum + file.records, 0);
  return [
    '{',
    '  "entries": [',
    entries.join(',\n'),
    '  ],',
    '  "schema": {',
    '    "elements": [',
    elements.join(',\n'),
    '    ]',
    '  },',
    '  "meta": {',
    `    "content_length": ${totalBytes},`,
    `    "record_count": ${totalRecords}`,
    '  },',
    '  "author": {',
    '    "name": "Amazon Redshift",',
    '    "version": "1.0.0"',
    '  }',
    '}',
    '',
  ].join('\n');
}
