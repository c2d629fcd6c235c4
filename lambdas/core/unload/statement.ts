/**
 * The UNLOAD statements and the batch that runs them. The file format is a contract with the
 * Aurora importer and the local emulator: text, `|`-delimited, NULL as `\N`, backslash
 * escapes, no header, no compression, a VERBOSE manifest. PostgreSQL reads it with COPY
 * `(FORMAT text, DELIMITER '|', NULL '\N', ENCODING 'UTF8')`.
 */
import * as z from 'zod';
import { count } from '../config-fields';
import { ConfigError } from '../errors';
import {
  displayQualified,
  type QualifiedName,
  quoteIdentifier,
  quoteQualified,
} from '../identifiers';
import { runScopedName, validateRunId } from '../swap/plan';
import { buildFiguresQuery } from '../transfer/figures';
import type { TableTransfer } from '../transfer/types';
import { buildOversizeQuery } from './oversize';

export interface UnloadOptions {
  /** The role Redshift assumes to write to S3; a chain of roles is written comma-separated. */
  readonly iamRoleArn: string;
  /** A KMS key to encrypt the files with (SSE-KMS); S3's default encryption otherwise. */
  readonly kmsKeyArn?: string;
  /** The bucket's region, when it is not the cluster's. */
  readonly region?: string;
  /** Largest file UNLOAD writes, in MB: small enough that one file imports within one 45 s RDS Data API call. */
  readonly maxFileSizeMb: number;
}

export const DEFAULT_MAX_FILE_SIZE_MB = 100;
const MIN_FILE_SIZE_MB = 5;
const MAX_FILE_SIZE_MB = 6000;

/** BatchExecuteStatement runs at most this many statements. */
export const MAX_BATCH_STATEMENTS = 40;

/**
 * Set first in every batch, so values print the same whatever the user's or cluster's
 * defaults: timestamptz in UTC (`+00`), floats with every digit needed to read them back
 * exactly, ISO dates.
 */
export const SESSION_SETTINGS: readonly string[] = [
  "SET timezone TO 'UTC'",
  'SET extra_float_digits TO 2',
  "SET datestyle TO 'ISO, MDY'",
];

/** The Redshift Data API refuses longer statement text. */
const MAX_STATEMENT_BYTES = 100_000;

/**
 * A Redshift string literal. Redshift reads a backslash in a literal as an escape (its
 * QUOTE_LITERAL doubles both), so both `'` and `\` are doubled.
 */
export function redshiftLiteral(text: string): string {
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]{1,128}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const S3_PREFIX = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+\/)$/;

/** Checks UnloadOptions and returns them; each error names the bad value and the expected shape. */
export function validateUnloadOptions(options: UnloadOptions): UnloadOptions {
  const roles = options.iamRoleArn.split(',');
  const badRole = roles.find((role) => !ROLE_ARN.test(role));
  if (badRole !== undefined) {
    throw new ConfigError(
      `iamRoleArn ${JSON.stringify(badRole)} is not an IAM role ARN; give the role Redshift assumes to write to the bucket, e.g. arn:aws:iam::123456789012:role/redshift-unload (chained roles separated by commas, no spaces).`,
    );
  }
  if (options.kmsKeyArn !== undefined && !KMS_KEY_ARN.test(options.kmsKeyArn)) {
    throw new ConfigError(
      `kmsKeyArn ${JSON.stringify(options.kmsKeyArn)} is not a KMS key ARN; give the key's full ARN, e.g. arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab, or leave it out for the bucket's default encryption.`,
    );
  }
  if (options.region !== undefined && !REGION.test(options.region)) {
    throw new ConfigError(
      `region ${JSON.stringify(options.region)} is not an AWS region name; give the bucket's region, e.g. eu-west-1, or leave it out when the bucket is in the cluster's region.`,
    );
  }
  const size = options.maxFileSizeMb;
  if (!Number.isInteger(size) || size < MIN_FILE_SIZE_MB || size > MAX_FILE_SIZE_MB) {
    throw new ConfigError(
      `maxFileSizeMb is ${JSON.stringify(size)}; give a whole number of MB from ${MIN_FILE_SIZE_MB} to ${MAX_FILE_SIZE_MB} (default ${DEFAULT_MAX_FILE_SIZE_MB}). Each file is imported by one RDS Data API call, which must finish within 45 s.`,
    );
  }
  return options;
}

/** `s3://<bucket>/runs/<runId>/<table's run-scoped name>/`: one folder per run and table. */
export function tableS3Prefix(bucket: string, runId: string, target: QualifiedName): string {
  if (!BUCKET.test(bucket)) {
    throw new ConfigError(
      `bucket ${JSON.stringify(bucket)} is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens); give the name only, without s3:// or a path.`,
    );
  }
  return `s3://${bucket}/runs/${validateRunId(runId)}/${runScopedName(runId, target)}/`;
}

/** Splits `s3://bucket/folder/` into bucket and key prefix; refuses anything else. */
export function parseS3Prefix(s3Prefix: string): { bucket: string; keyPrefix: string } {
  const match = S3_PREFIX.exec(s3Prefix);
  if (!match) {
    throw new ConfigError(
      `S3 prefix ${JSON.stringify(s3Prefix)} must look like s3://bucket/folder/ (ending with /); build it with tableS3Prefix.`,
    );
  }
  return { bucket: match[1]!, keyPrefix: match[2]! };
}

/**
 * The key of the manifest UNLOAD writes into a table's folder, given the folder's key prefix
 * (the part of tableS3Prefix's URL after the bucket, ending with `/`).
 */
export function manifestKey(keyPrefix: string): string {
  if (!keyPrefix.endsWith('/') || keyPrefix.startsWith('/') || keyPrefix.startsWith('s3:')) {
    throw new ConfigError(
      `manifestKey needs a table folder's key prefix such as runs/<run>/<table>/ (no s3://bucket, ending with /); got ${JSON.stringify(keyPrefix)}.`,
    );
  }
  return `${keyPrefix}manifest`;
}

/** The cast types a delta's literal may take: spliced into SQL, so nothing else passes. */
const CAST_TYPE =
  /^(SMALLINT|INTEGER|BIGINT|NUMERIC|NUMERIC\(\d{1,2},\d{1,2}\)|DATE|TIMESTAMP|TIMESTAMPTZ)$/;

/** ` WHERE <cursor> >= CAST('<watermark>' AS <type>)` for a delta, '' for a whole table. */
export function deltaWhere(transfer: Pick<TableTransfer, 'delta' | 'table'>): string {
  const { delta } = transfer;
  if (!delta) return '';
  if (!CAST_TYPE.test(delta.castType) || (delta.operator !== '>=' && delta.operator !== '>')) {
    throw new ConfigError(
      `${displayQualified(transfer.table.source)}: the delta filter ${JSON.stringify(delta)} is not one cursorCastType builds; unload again.`,
    );
  }
  return ` WHERE ${quoteIdentifier(delta.cursor)} ${delta.operator} CAST(${redshiftLiteral(delta.watermark)} AS ${delta.castType})`;
}

/**
 * The SELECT that UNLOAD runs: the target's columns, in its order, from the source table (its
 * rows past the watermark, for a delta).
 */
export function buildUnloadQuery(transfer: TableTransfer): string {
  if (transfer.columns.length === 0) {
    throw new ConfigError(
      `${displayQualified(transfer.table.source)} has no columns to unload; plan its columns first.`,
    );
  }
  const selectList = transfer.columns
    .map((column) => `${column.selectExpression} AS ${quoteIdentifier(column.name)}`)
    .join(', ');
  return `SELECT ${selectList} FROM ${quoteQualified(transfer.table.source)}${deltaWhere(transfer)}`;
}

function checkLength(statement: string, what: string): string {
  const bytes = Buffer.byteLength(statement, 'utf8');
  if (bytes > MAX_STATEMENT_BYTES) {
    throw new ConfigError(
      `${what} is ${bytes} bytes long; the Redshift Data API takes at most ${MAX_STATEMENT_BYTES} bytes per statement. Sync a view with fewer or shorter-named columns instead.`,
    );
  }
  return statement;
}

/** One table's UNLOAD, in the contract's shape (one group of options per line, fixed order). */
export function buildUnloadStatement(transfer: TableTransfer, options: UnloadOptions): string {
  return unloadStatement(
    buildUnloadQuery(transfer),
    transfer.s3Prefix,
    options,
    `the UNLOAD of ${displayQualified(transfer.table.source)}`,
  );
}

/**
 * The key-only UNLOAD of `deletes: "reconcile"`: the key columns of every row of the source
 * table (no delta filter), into the key folder, in the same shape and transaction as the data.
 */
export function buildKeyUnloadStatement(transfer: TableTransfer, options: UnloadOptions): string {
  const { keys } = transfer;
  if (!keys || keys.columns.length === 0) {
    throw new ConfigError(
      `${displayQualified(transfer.table.source)} has no key to unload; resolve the key of deletes "reconcile" first.`,
    );
  }
  const selectList = keys.columns
    .map((column) => `${column.selectExpression} AS ${quoteIdentifier(column.name)}`)
    .join(', ');
  return unloadStatement(
    `SELECT ${selectList} FROM ${quoteQualified(transfer.table.source)}`,
    keys.s3Prefix,
    options,
    `the key UNLOAD of ${displayQualified(transfer.table.source)}`,
  );
}

function unloadStatement(
  query: string,
  s3Prefix: string,
  options: UnloadOptions,
  what: string,
): string {
  const valid = validateUnloadOptions(options);
  parseS3Prefix(s3Prefix);
  const optional = [
    ...(valid.kmsKeyArn === undefined
      ? []
      : [`KMS_KEY_ID ${redshiftLiteral(valid.kmsKeyArn)} ENCRYPTED`]),
    ...(valid.region === undefined ? [] : [`REGION ${redshiftLiteral(valid.region)}`]),
  ];
  const lines = [
    `UNLOAD (${redshiftLiteral(query)})`,
    `TO ${redshiftLiteral(s3Prefix)}`,
    `IAM_ROLE ${redshiftLiteral(valid.iamRoleArn)}`,
    `DELIMITER AS ${redshiftLiteral('|')} NULL AS ${redshiftLiteral('\\N')} ESCAPE`,
    `MANIFEST VERBOSE PARALLEL ON MAXFILESIZE ${valid.maxFileSizeMb} MB`,
    ...(optional.length > 0 ? [optional.join(' ')] : []),
  ];
  return checkLength(lines.join('\n'), what);
}

/**
 * One table's figures over what its UNLOAD read (the delta's rows, for a delta), read in the
 * same snapshot; staging is held to them. With `whole`, over the whole source table: what live
 * must equal once an increment is applied, and where the new watermark comes from.
 */
export function buildSourceFiguresQuery(transfer: TableTransfer, whole = false): string {
  return checkLength(
    buildFiguresQuery(
      quoteQualified(transfer.table.source),
      transfer.columns.map((column) => ({ name: column.name, figures: column.figures })),
    ) + (whole ? '' : deltaWhere(transfer)),
    `the figures query of ${displayQualified(transfer.table.source)}`,
  );
}

/**
 * Read in every call of an unload session: the start of the transaction the call runs in
 * (Redshift's SYSDATE, https://docs.aws.amazon.com/redshift/latest/dg/r_SYSDATE.html). Every
 * call of one transaction reads the same value; a call that reads another ran in another
 * transaction, and so in another snapshot.
 */
export const TRANSACTION_START_SQL = 'SELECT SYSDATE AS transaction_started';

/** A statement of an unload session: which call (0-based) and its index in that call. */
export const sessionStatement = z.object({ batch: count, index: count });
export type SessionStatement = z.infer<typeof sessionStatement>;

export interface UnloadSessionPlan {
  /**
   * One BatchExecuteStatement each, run in order on ONE Data API session: the first opens a
   * transaction (`BEGIN`), the last commits it, so every UNLOAD and figures query reads the
   * snapshot the transaction's first query took.
   */
  readonly batches: readonly (readonly string[])[];
  /** Per batch, the index of its TRANSACTION_START_SQL. */
  readonly transactionStartIndex: readonly number[];
  /** Per transfer, in the order given: where its figures query is. */
  readonly figures: readonly SessionStatement[];
  /**
   * Per transfer, where its oversize count is (buildOversizeQuery), or null when it has no
   * column to count. Every count runs in calls before the first UNLOAD's.
   */
  readonly oversize: readonly (SessionStatement | null)[];
  /** Per transfer: where its whole-table figures query is, for a delta; null otherwise. */
  readonly wholeFigures: readonly (SessionStatement | null)[];
  /** Per transfer: where its key UNLOAD is, for a delta that reconciles deletes; null otherwise. */
  readonly keyUnloads: readonly (SessionStatement | null)[];
}

/**
 * Any number of tables in one transaction spread over calls of at most MAX_BATCH_STATEMENTS:
 * `BEGIN`, the settings, the oversize counts (if any table has a column to count), then, from
 * a new call on, per table its UNLOAD and its figures query, then `COMMIT`; each call starts
 * by reading the transaction's start. The counts are read, and the run refused, before the
 * call with the first UNLOAD is submitted.
 */
export function buildUnloadSession(
  transfers: readonly TableTransfer[],
  options: UnloadOptions,
): UnloadSessionPlan {
  if (transfers.length === 0) {
    throw new ConfigError('the unload has no tables; name at least one.');
  }
  const seen = new Map<string, TableTransfer>();
  for (const transfer of transfers) {
    const earlier = seen.get(transfer.s3Prefix);
    if (earlier) {
      throw new ConfigError(
        `${displayQualified(earlier.table.target)} and ${displayQualified(transfer.table.target)} would unload into the same folder ${transfer.s3Prefix}; each table needs its own (tableS3Prefix).`,
      );
    }
    seen.set(transfer.s3Prefix, transfer);
  }
  const batches: string[][] = [['BEGIN', ...SESSION_SETTINGS, TRANSACTION_START_SQL]];
  const transactionStartIndex = [SESSION_SETTINGS.length + 1];
  const newCall = () => {
    batches.push([TRANSACTION_START_SQL]);
    transactionStartIndex.push(0);
  };
  const add = (statement: string): SessionStatement => {
    if (batches.at(-1)!.length === MAX_BATCH_STATEMENTS) newCall();
    const batch = batches.at(-1)!;
    batch.push(statement);
    return { batch: batches.length - 1, index: batch.length - 1 };
  };
  const oversize = transfers.map((transfer) => {
    const query = buildOversizeQuery(transfer);
    return query === null
      ? null
      : add(checkLength(query, `the oversize count of ${displayQualified(transfer.table.source)}`));
  });
  if (oversize.some((at) => at !== null)) newCall();
  const figures: SessionStatement[] = [];
  const wholeFigures: (SessionStatement | null)[] = [];
  const keyUnloads: (SessionStatement | null)[] = [];
  for (const transfer of transfers) {
    add(buildUnloadStatement(transfer, options));
    figures.push(add(buildSourceFiguresQuery(transfer)));
    wholeFigures.push(transfer.delta ? add(buildSourceFiguresQuery(transfer, true)) : null);
    // After the whole-table figures, whose row count the key files are held to, and after the
    // data UNLOAD: its destination prefix covers the key folder, and UNLOAD refuses a
    // destination that already holds files ("Specified unload destination on S3 is not empty").
    keyUnloads.push(
      transfer.delta && transfer.keys ? add(buildKeyUnloadStatement(transfer, options)) : null,
    );
  }
  add('COMMIT');
  return { batches, transactionStartIndex, figures, oversize, wholeFigures, keyUnloads };
}
