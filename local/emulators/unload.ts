/**
 * Redshift's UNLOAD, emulated over a PostgreSQL source: the statement parsed with Redshift's
 * rules, the rows read in the caller's transaction, and the files written as Redshift writes
 * them in its text format (checked against the UNLOAD reference, docs.aws.amazon.com/redshift/
 * latest/dg/r_UNLOAD.html):
 * - values as the server prints them, fields joined by DELIMITER, one line (LF) per row;
 * - with ESCAPE, a backslash before LF, CR, the delimiter and the backslash, in character
 *   (CHAR/VARCHAR) values only;
 * - NULL as the NULL AS text, never escaped (the empty string without NULL AS);
 * - REAL and DOUBLE PRECISION with FLT_DIG (6) or DBL_DIG (15) plus extra_float_digits
 *   significant digits, C's `%g` form, as Redshift prints floats: its extra_float_digits goes
 *   from -15 to 2 (docs.aws.amazon.com/redshift/latest/dg/r_extra_float_digits.html), so a
 *   REAL gets at most 8 digits, one short of the 9 a float4 needs to be read back exactly.
 *   PostgreSQL 12 and later print the shortest exact form instead, which would hide that;
 * - one or more files per slice, `<prefix><slice:4>_part_<part:2>`, rows dealt round-robin
 *   over the slices, so a slice without rows leaves a 0-byte file; a file is closed before it
 *   would pass MAXFILESIZE; with PARALLEL OFF one series `<prefix>000`, `<prefix>001`, ...;
 * - `<prefix>manifest` listing every file (with VERBOSE: sizes, record counts, the columns);
 * - a destination that already has files is refused unless ALLOWOVERWRITE.
 *
 * The work is PostgreSQL's: it prints, escapes and joins each row's values into its line in C
 * (lineQuery) and streams the lines out with binary COPY; Node only strips the framing and
 * copies the bytes into the files. With PARALLEL ON the slices read their own rows on sessions
 * of their own (up to MAX_SLICE_SESSIONS), all on one snapshot, as a cluster's slices unload
 * theirs side by side.
 */

import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { SyncError } from '../../lambdas/core/errors';
import {
  describePosition,
  pointAtShims,
  RedshiftSqlSyntaxError,
  significantTokens,
  type Token,
} from './redshift-sql';

/** An UNLOAD option Redshift has and this emulator does not implement. */
export class UnsupportedUnloadOptionError extends SyncError {}

/** An UNLOAD that Redshift would refuse when it runs (its destination is not empty, ...). */
export class UnloadError extends SyncError {}

export type ManifestKind = 'none' | 'plain' | 'verbose';

export interface UnloadOptions {
  /** One ASCII character between fields. */
  readonly delimiter: string;
  /** What a NULL is written as. */
  readonly nullAs: string;
  readonly escape: boolean;
  readonly manifest: ManifestKind;
  readonly parallel: boolean;
  /** Largest file written, in bytes. */
  readonly maxFileSizeBytes: number;
  readonly allowOverwrite: boolean;
  /** Accepted without effect: the folder needs no credentials, encryption or region. */
  readonly iamRole: string;
  readonly kmsKeyId: string | null;
  readonly encrypted: boolean;
  readonly region: string | null;
}

export interface UnloadStatement {
  /** The SELECT, decoded from its literal. */
  readonly query: string;
  /** The TO location, `s3://bucket/name-prefix`. */
  readonly to: string;
  readonly options: UnloadOptions;
}

/** Redshift does not say whether its MB and GB are binary units; taken as binary here. */
const MB = 1024 * 1024;
const GB = 1024 * MB;
const MIN_FILE_SIZE = 5 * MB;
/** Redshift's largest (and default) file: 6.2 GB. */
const MAX_FILE_SIZE = Math.round(6.2 * GB);

/** Options Redshift has that the emulator refuses, with what each would need. */
const NOT_EMULATED: Readonly<Record<string, string>> = {
  FORMAT: 'only the default text format is emulated',
  CSV: 'only the default text format is emulated',
  PARQUET: 'only the default text format is emulated',
  JSON: 'only the default text format is emulated',
  HEADER: 'header lines are not emulated',
  ADDQUOTES: 'quoted fields are not emulated',
  FIXEDWIDTH: 'fixed-width output is not emulated',
  GZIP: 'compressed output is not emulated',
  BZIP2: 'compressed output is not emulated',
  ZSTD: 'compressed output is not emulated',
  PARTITION: 'partitioned output is not emulated',
  CLEANPATH: 'CLEANPATH is not emulated; use a fresh prefix or ALLOWOVERWRITE',
  EXTENSION: 'file name extensions are not emulated',
  ROWGROUPSIZE: 'Parquet row groups are not emulated',
  MASTER_SYMMETRIC_KEY: 'client-side encryption is not emulated',
  CREDENTIALS: 'give IAM_ROLE instead',
  ACCESS_KEY_ID: 'give IAM_ROLE instead',
  SECRET_ACCESS_KEY: 'give IAM_ROLE instead',
  SESSION_TOKEN: 'give IAM_ROLE instead',
};

/** Reads the tokens of one UNLOAD statement; every error names what was expected and where. */
class UnloadParser {
  private index = 0;
  private readonly seen = new Set<string>();

  constructor(
    private readonly sql: string,
    private readonly tokens: readonly Token[],
  ) {}

  private fail(message: string, token: Token | undefined = this.tokens[this.index]): never {
    const where = token ? `at ${describePosition(this.sql, token.start)}` : 'at the end';
    throw new RedshiftSqlSyntaxError(`UNLOAD: ${message}, ${where}`);
  }

  private peek(): Token | undefined {
    return this.tokens[this.index];
  }

  private peekWord(): string | undefined {
    const token = this.peek();
    return token?.kind === 'word' ? token.text.toUpperCase() : undefined;
  }

  private found(): string {
    const token = this.peek();
    return token ? `found ${JSON.stringify(token.text.slice(0, 40))}` : 'found the end';
  }

  private expectPunctuation(char: string, what: string): void {
    if (this.peek()?.text !== char) this.fail(`expected ${what}; ${this.found()}`);
    this.index += 1;
  }

  private expectWord(word: string, what: string): void {
    if (this.peekWord() !== word) this.fail(`expected ${what}; ${this.found()}`);
    this.index += 1;
  }

  private expectString(what: string): string {
    const token = this.peek();
    if (token?.kind !== 'string' || !token.text.startsWith("'")) {
      this.fail(`expected ${what} as a 'quoted' string; ${this.found()}`);
    }
    this.index += 1;
    return token.value;
  }

  private optionalWord(word: string): boolean {
    if (this.peekWord() !== word) return false;
    this.index += 1;
    return true;
  }

  parse(): UnloadStatement {
    this.expectWord('UNLOAD', 'UNLOAD');
    this.expectPunctuation('(', "( 'select-statement' )");
    const queryToken = this.peek();
    const query = this.expectString('the query');
    if (query.trim() === '') this.fail('the query is empty', queryToken);
    this.expectPunctuation(')', "the ) closing the query's parentheses");
    refuseOuterLimit(query);
    this.expectWord('TO', "TO 's3://bucket/prefix'");
    const toToken = this.peek();
    const to = this.expectString('the TO location');
    if (!/^s3:\/\/[^/]+\/./.test(to)) {
      this.fail(
        `TO must be s3://bucket/name-prefix with a bucket and a prefix; got ${JSON.stringify(to)}`,
        toToken,
      );
    }
    return { query, to, options: this.parseOptions() };
  }

  private once(name: string, token: Token): void {
    if (this.seen.has(name)) this.fail(`${name} is given twice`, token);
    this.seen.add(name);
  }

  private parseOptions(): UnloadOptions {
    let delimiter = '|';
    let nullAs = '';
    let escapes = false;
    let manifest: ManifestKind = 'none';
    let parallel = true;
    let maxFileSizeBytes = MAX_FILE_SIZE;
    let allowOverwrite = false;
    let iamRole: string | null = null;
    let kmsKeyId: string | null = null;
    let encrypted = false;
    let encryptedAuto = false;
    let region: string | null = null;

    while (this.index < this.tokens.length) {
      const token = this.peek()!;
      if (token.text === ';' && this.index === this.tokens.length - 1) {
        this.index += 1;
        break;
      }
      const word = this.peekWord();
      if (word === undefined) this.fail(`expected an UNLOAD option; ${this.found()}`);
      if (Object.hasOwn(NOT_EMULATED, word)) {
        throw new UnsupportedUnloadOptionError(
          `UNLOAD option ${word} is not supported by the local UNLOAD emulator (${NOT_EMULATED[word]}), at ${describePosition(this.sql, token.start)}`,
        );
      }
      this.index += 1;
      switch (word) {
        case 'IAM_ROLE':
          this.once(word, token);
          iamRole = this.optionalWord('DEFAULT') ? 'default' : this.expectString('the role ARN');
          break;
        case 'DELIMITER': {
          this.once(word, token);
          this.optionalWord('AS');
          const valueToken = this.peek();
          delimiter = this.expectString('the delimiter');
          const code = delimiter.length === 1 ? delimiter.charCodeAt(0) : 0;
          if (code < 1 || code > 0x7f || delimiter === '\n' || delimiter === '\r') {
            this.fail(
              `DELIMITER must be one ASCII character other than LF and CR; got ${JSON.stringify(delimiter)}`,
              valueToken,
            );
          }
          break;
        }
        case 'NULL':
          this.once(word, token);
          this.optionalWord('AS');
          nullAs = this.expectString('the NULL AS text');
          break;
        case 'ESCAPE':
          this.once(word, token);
          escapes = true;
          break;
        case 'MANIFEST':
          this.once(word, token);
          manifest = this.optionalWord('VERBOSE') ? 'verbose' : 'plain';
          break;
        case 'PARALLEL':
          this.once(word, token);
          if (this.optionalWord('OFF') || this.optionalWord('FALSE')) parallel = false;
          else if (this.optionalWord('ON') || this.optionalWord('TRUE')) parallel = true;
          break;
        case 'MAXFILESIZE':
          this.once(word, token);
          maxFileSizeBytes = this.parseFileSize();
          break;
        case 'ALLOWOVERWRITE':
          this.once(word, token);
          allowOverwrite = true;
          break;
        case 'KMS_KEY_ID':
          this.once(word, token);
          kmsKeyId = this.expectString('the KMS key id');
          break;
        case 'ENCRYPTED':
          this.once(word, token);
          encrypted = true;
          encryptedAuto = this.optionalWord('AUTO');
          break;
        case 'REGION':
          this.once(word, token);
          this.optionalWord('AS');
          region = this.expectString('the region');
          break;
        default:
          this.fail(`${word} is not an UNLOAD option`, token);
      }
    }
    if (iamRole === null) {
      this.fail("UNLOAD needs authorization: add IAM_ROLE 'arn:aws:iam::<account>:role/<name>'");
    }
    if (kmsKeyId !== null && !encrypted) {
      this.fail('KMS_KEY_ID needs ENCRYPTED as well (Redshift refuses it alone)');
    }
    if (kmsKeyId !== null && encryptedAuto) {
      this.fail('ENCRYPTED AUTO cannot be combined with KMS_KEY_ID');
    }
    return {
      delimiter,
      nullAs,
      escape: escapes,
      manifest,
      parallel,
      maxFileSizeBytes,
      allowOverwrite,
      iamRole,
      kmsKeyId,
      encrypted,
      region,
    };
  }

  private parseFileSize(): number {
    this.optionalWord('AS');
    const numberToken = this.peek();
    if (numberToken?.kind !== 'number') {
      this.fail(`expected MAXFILESIZE's size, a number of MB or GB; ${this.found()}`);
    }
    this.index += 1;
    let unit = MB;
    if (this.optionalWord('GB')) unit = GB;
    else this.optionalWord('MB');
    const bytes = Math.round(Number(numberToken.text) * unit);
    if (!(bytes >= MIN_FILE_SIZE && bytes <= MAX_FILE_SIZE)) {
      this.fail('MAXFILESIZE must be from 5 MB to 6.2 GB', numberToken);
    }
    return bytes;
  }
}

/** Redshift refuses a LIMIT in the outer SELECT of an UNLOAD's query. */
function refuseOuterLimit(query: string): void {
  let depth = 0;
  for (const token of significantTokens(query)) {
    if (token.text === '(') depth += 1;
    else if (token.text === ')') depth -= 1;
    else if (depth === 0 && token.kind === 'word' && token.text.toUpperCase() === 'LIMIT') {
      throw new RedshiftSqlSyntaxError(
        `UNLOAD: the query cannot use LIMIT in its outer SELECT (Redshift refuses it); put the LIMIT in a subquery, at ${describePosition(query, token.start)} of the query`,
      );
    }
  }
}

/** True when the statement is an UNLOAD (its first word). */
export function isUnload(sql: string): boolean {
  const first = significantTokens(sql)[0];
  return first?.kind === 'word' && first.text.toUpperCase() === 'UNLOAD';
}

/** Parses an UNLOAD statement with Redshift's rules; options in any order, any case. */
export function parseUnload(sql: string): UnloadStatement {
  return new UnloadParser(sql, significantTokens(sql)).parse();
}

/** A column of the unloaded rows. */
export interface UnloadColumn {
  readonly name: string;
  /** The type's name, for the VERBOSE manifest. */
  readonly type: string;
  /** CHAR/VARCHAR-like: the only values ESCAPE applies to. */
  readonly character: boolean;
  /** Binary (VARBYTE; bytea in the stand-in): printed as bare hex, as Redshift unloads VARBYTE. */
  readonly binary: boolean;
  /** REAL or DOUBLE PRECISION: how many significant digits Redshift prints (see floatText). */
  readonly significantDigits?: number;
  /** True when a cast to text prints what the output function prints (no cast function of its own). */
  readonly castPrints?: boolean;
}

/** FLT_DIG and DBL_DIG, the digits extra_float_digits is added to. */
const FLOAT_DIGITS: Readonly<Record<string, { base: number; float4: boolean }>> = {
  real: { base: 6, float4: true },
  'double precision': { base: 15, float4: false },
};

/** Redshift's range of extra_float_digits (r_extra_float_digits.html). */
export const MIN_EXTRA_FLOAT_DIGITS = -15;
export const MAX_EXTRA_FLOAT_DIGITS = 2;

/**
 * A float printed as C's `printf("%.*g", digits, value)`, which is how PostgreSQL printed
 * floats before version 12 and Redshift still describes its output (FLT_DIG or DBL_DIG plus
 * extra_float_digits significant digits). A REAL is first rounded to float4 (Math.fround), so
 * its digits are the float4's own.
 */
export function floatText(number: number, digits: number, float4: boolean): string {
  if (!Number.isFinite(number)) return Number.isNaN(number) ? 'NaN' : String(number);
  const value = float4 ? Math.fround(number) : number;
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const precision = Math.max(1, Math.min(digits, 100));
  const exponent = Math.floor(Math.log10(Math.abs(Number(value.toPrecision(precision)))));
  if (exponent < -4 || exponent >= precision) {
    const [mantissa, power] = value.toExponential(precision - 1).split('e');
    const sign = power!.startsWith('-') ? '-' : '+';
    const magnitude = power!.replace(/^[+-]/, '').padStart(2, '0');
    return `${stripZeros(mantissa!)}e${sign}${magnitude}`;
  }
  return stripZeros(value.toFixed(Math.max(0, precision - 1 - exponent)));
}

/** `%g` drops trailing zeros of the fraction, and the point with them. */
function stripZeros(fixed: string): string {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

export type LineFormat = Pick<UnloadOptions, 'delimiter' | 'nullAs' | 'escape'>;

/**
 * One row as the line UNLOAD writes for it (with its LF), from the server's text forms: the
 * writer's rules in one place, value by value. The emulator itself has PostgreSQL build the
 * lines (lineQuery); the tests hold the two to the same bytes.
 */
export function formatUnloadLine(
  values: readonly (string | null)[],
  columns: readonly UnloadColumn[],
  format: LineFormat,
): string {
  const special = escapedCharacters(format.delimiter);
  const fields = values.map((value, index) => {
    if (value === null) return format.nullAs;
    const column = columns[index]!;
    if (column.binary) return value.startsWith('\\x') ? value.slice(2) : value;
    if (column.significantDigits !== undefined) {
      return floatText(Number(value), column.significantDigits, FLOAT_DIGITS[column.type]!.float4);
    }
    if (!format.escape || !column.character) return value;
    return value.replace(special, '\\$&');
  });
  return `${fields.join(format.delimiter)}\n`;
}

/** What ESCAPE puts a backslash before: backslash, LF, CR and the delimiter. */
function escapedSet(delimiter: string): string[] {
  return [...new Set(['\\', '\n', '\r', delimiter])];
}

/** The characters of escapedSet as one pattern per delimiter. */
const ESCAPED_CHARACTERS = new Map<string, RegExp>();

function escapedCharacters(delimiter: string): RegExp {
  let pattern = ESCAPED_CHARACTERS.get(delimiter);
  if (!pattern) {
    const quoted = escapedSet(delimiter)
      .map((character) => character.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'))
      .join('|');
    pattern = new RegExp(quoted, 'g');
    ESCAPED_CHARACTERS.set(delimiter, pattern);
  }
  return pattern;
}

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
  /** Full blocks waiting to be written, then `block`, filled up to `fill`. */
  readonly full: Buffer[];
  block: Buffer | null;
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
      if (file.block !== null && file.fill > 0) file.full.push(file.block.subarray(0, file.fill));
      file.block = Buffer.allocUnsafe(Math.max(BLOCK_BYTES, length));
      file.fill = 0;
    }
    source.copy(file.block, file.fill, start, end);
    file.fill += length;
    file.bytes += length;
    file.records += 1;
    this.waiting[stream]! += length;
  }

  /** Writes the waiting lines of `stream`'s files, creating each file the first time. */
  async flush(stream: number): Promise<void> {
    for (const file of this.streams[stream]!) {
      if (!file.created) {
        await this.bucket.createObject(this.location.bucket, file.key);
        file.created = true;
      }
      if (file.fill === 0 && file.full.length === 0) continue;
      const pieces = file.block ? [...file.full, file.block.subarray(0, file.fill)] : file.full;
      await this.bucket.appendToObject(this.location.bucket, file.key, Buffer.concat(pieces));
      file.full.length = 0;
      // The bucket is done with the block once appendToObject returns: it is filled anew.
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

async function describeColumns(
  client: pg.ClientBase,
  fields: readonly pg.FieldDef[],
  extraFloatDigits: number,
): Promise<UnloadColumn[]> {
  const types = await client.query<{
    oid: number;
    name: string;
    category: string;
    castPrints: boolean;
  }>({
    text: `SELECT t.oid::int AS oid, format_type(t.oid, NULL) AS name, t.typcategory::text AS category,
                  NOT EXISTS (SELECT FROM pg_catalog.pg_cast AS c
                               WHERE c.castsource = t.oid AND c.casttarget = 'pg_catalog.text'::pg_catalog.regtype
                                 AND c.castmethod = 'f') AS "castPrints"
             FROM pg_catalog.pg_type AS t WHERE t.oid = ANY($1::oid[])`,
    values: [fields.map((field) => field.dataTypeID)],
  });
  const byOid = new Map(types.rows.map((type) => [type.oid, type]));
  return fields.map((field) => {
    const type = byOid.get(field.dataTypeID);
    const float = FLOAT_DIGITS[type?.name ?? ''];
    return {
      name: field.name,
      type: type?.name ?? 'unknown',
      character: type?.category === 'S',
      binary: type?.name === 'bytea',
      ...(float ? { significantDigits: float.base + extraFloatDigits } : {}),
      castPrints: type?.castPrints ?? false,
    };
  });
}

/** A string as a PostgreSQL literal that reads the same whatever standard_conforming_strings is. */
function literal(text: string): string {
  return `E'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/**
 * One value as its field, in SQL: NULL as the NULL AS text; bytes as bare hex; anything else
 * as its type's output function prints it, with ESCAPE's backslashes in character values. A
 * cast to text prints as the output function unless the type has a cast function of its own
 * (a boolean's says true/false, a CHAR's cuts the padding): those go through concat, which
 * calls the output function, booleans through t/f directly. Each replace puts a backslash
 * before one character; only the first, the backslash's own, sees backslashes, so the result
 * is the single pass formatUnloadLine makes.
 */
function fieldSql(column: UnloadColumn, ref: string, format: LineFormat): string {
  let value: string;
  if (column.binary) value = `pg_catalog.encode(${ref}, 'hex')`;
  else if (column.type === 'boolean')
    value = `CASE WHEN ${ref} THEN 't' WHEN NOT ${ref} THEN 'f' END`;
  else if (column.castPrints) value = `${ref}::pg_catalog.text`;
  else value = `CASE WHEN ${ref} IS NOT NULL THEN pg_catalog.concat(${ref}) END`;
  if (format.escape && column.character) {
    for (const character of escapedSet(format.delimiter)) {
      value = `pg_catalog.replace(${value}, ${literal(character)}, ${literal(`\\${character}`)})`;
    }
  }
  return `COALESCE(${value}, ${literal(format.nullAs)})`;
}

/**
 * A piece of a line: text PostgreSQL made, or a float Node prints (see floatText); or, first,
 * the slice the line goes to, when a session reads for several slices.
 */
type LinePart =
  | { readonly kind: 'text' }
  | { readonly kind: 'float'; readonly column: UnloadColumn }
  | { readonly kind: 'slice' };

/**
 * Which rows a session reads: the rows are numbered in the query's order and dealt over
 * `slices` slices in turn; the session reads those of every slice `s` with
 * `s % sessions = index`, and says which slice each row is for.
 */
interface SliceRows {
  readonly index: number;
  readonly sessions: number;
  readonly slices: number;
}

/**
 * The query whose rows are the lines, for `COPY ... TO STDOUT (FORMAT binary)`: PostgreSQL
 * formats and escapes every value in C and joins the fields, LF included, into one text per
 * row, so Node only copies bytes. A REAL or DOUBLE PRECISION column breaks the text: it comes
 * as its binary float, which Node prints with Redshift's digits (PostgreSQL 12 and later print
 * no `%g` form past extra_float_digits 0). The query's columns are renamed by position, so
 * repeated or odd names need no care. With `slice`, only the rows of one session's slices
 * (SliceRows), dealt round-robin as UnloadFileWriter.add deals them.
 */
export function lineQuery(
  query: string,
  columns: readonly UnloadColumn[],
  format: LineFormat,
  slice?: SliceRows,
): { sql: string; parts: LinePart[] } {
  const selected: string[] = [];
  const parts: LinePart[] = [];
  if (slice) {
    selected.push(`((unloaded.unload_row - 1) % ${slice.slices})::pg_catalog.int4`);
    parts.push({ kind: 'slice' });
  }
  let pieces: string[] = [];
  const closeText = () => {
    if (pieces.length === 0) return;
    selected.push(pieces.join(' || '));
    parts.push({ kind: 'text' });
    pieces = [];
  };
  columns.forEach((column, index) => {
    if (index > 0) pieces.push(literal(format.delimiter));
    const ref = `unloaded.c${index + 1}`;
    if (column.significantDigits === undefined) {
      pieces.push(fieldSql(column, ref, format));
      return;
    }
    closeText();
    selected.push(`${ref}::pg_catalog.${FLOAT_DIGITS[column.type]!.float4 ? 'float4' : 'float8'}`);
    parts.push({ kind: 'float', column });
  });
  pieces.push(literal('\n'));
  closeText();
  const names = columns.map((_, index) => `c${index + 1}`).join(', ');
  const source = `(\n${query}\n) AS unloaded${columns.length > 0 ? `(${names})` : ''}`;
  const from = slice
    ? `(SELECT pg_catalog.row_number() OVER () AS unload_row, unloaded.* FROM ${source}) AS unloaded
        WHERE (unloaded.unload_row - 1) % ${slice.slices} % ${slice.sessions} = ${slice.index}`
    : source;
  return { sql: `SELECT ${selected.join(', ')} FROM ${from}`, parts };
}

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
