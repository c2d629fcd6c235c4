/**
 * Aurora PostgreSQL's `aws_s3` import, for a plain PostgreSQL standing in for Aurora: schemas
 * `aws_commons` and `aws_s3` with the extension's signatures (docs.aws.amazon.com/AmazonRDS/
 * latest/AuroraUserGuide/USER_PostgreSQL.S3Import.Reference.html), reading objects from the
 * local bucket folder (`s3://bucket/key` is `<s3Dir>/bucket/key`) instead of S3.
 *
 * Like Aurora's, the import splices `table_name` and `column_list` into a COPY as given, so
 * callers pass quoted identifiers; `options` goes after `WITH`. (AWS does not document this;
 * public re-implementations such as chimpler/postgres-aws-s3 splice the same way.) It answers
 * as Aurora does: `N rows imported into relation "<table_name>" from file <file_path> of B
 * bytes`, echoing `table_name` as given (how Aurora prints a quoted name is not seen). A 0-byte
 * object fails with Aurora's HTTP 416 error (S3 refuses a ranged GET of an empty object; seen
 * in aws/aws-advanced-jdbc-wrapper#1453); a missing object with the same message for HTTP 404
 * (that wording is assumed from the 416 one, not seen).
 *
 * The COPY reads a server-side file, which needs a superuser: the function is SECURITY DEFINER,
 * owned by the superuser that installs it, with its search_path pinned. So that it grants no
 * more than Aurora's does, it checks that the calling role may INSERT into the table, and it
 * refuses a table name it cannot resolve without the caller's search_path (qualify it), a
 * column list that is not a list of names, and options holding a second statement. EXECUTE is
 * granted to PUBLIC (on Aurora, rds_superuser creates the extension and grants it).
 *
 * Where the objects come from. When the server reads the local bucket folder (same machine,
 * the folder readable by its OS user), COPY reads the object's file. A server in a container
 * or on another host does not see the folder (or sees another one at that path), so install
 * probes for it: it writes a random file there and asks the server to read it back. When the
 * server does not, the local object store also writes each object into the target database
 * (`aws_s3_local.objects`: one large object per key, appended in the UNLOAD writer's chunks
 * through `aws_s3_local.append_to_object`), and the import hands it to COPY as a file the
 * server itself writes with server-side `lo_export` into its data directory (the one folder
 * every PostgreSQL server can write), emptied again after the COPY. Why this way: a function
 * cannot run `COPY FROM STDIN`; parsing COPY's text format in SQL would not be byte-exact
 * for every option COPY takes (CSV quoting, encodings, escapes); `COPY FROM PROGRAM` would
 * need a program on the server. The file keeps COPY itself, with the caller's options, as the
 * only reader, so both sources import the same rows, count the same bytes and fail the same
 * way. `lo_export` writes server files as the server's OS user, so only a superuser may call
 * it (www.postgresql.org/docs/current/lo-funcs.html): the function's owner is one. COPY from a
 * file likewise reads it as the server's user (www.postgresql.org/docs/current/sql-copy.html),
 * which is why a server elsewhere cannot read the folder.
 * The file is named by the backend's pid, so concurrent imports never share one; a cancelled
 * import may leave its last object there until that pid imports again.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, realpath, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type pg from 'pg';
import { ConfigError } from '../../lambdas/core/errors';
import type { ObjectCopy } from './local-object-store';

/** The Aurora error texts the shim reproduces (HTTP status in the message, SQLSTATE XX000). */
export function auroraS3ErrorText(httpStatus: 404 | 416): string {
  return `Unable to validate pre-signed URL. Error: HTTP ${httpStatus}. Check your arguments and try again.`;
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/**
 * Where the import reads objects: the files of the local bucket folder, or the copies the
 * local object store writes into the target database (`aws_s3_local.objects`).
 */
export type ShimObjectSource = 'folder' | 'database';

/**
 * The database's copy of the local bucket: only its superuser owner writes it (the local
 * object store, through the admin connection); only the import reads it. Each object is one
 * large object, written in pieces at increasing offsets as the UNLOAD writer appends them.
 */
const OBJECT_COPY_STATEMENTS = [
  'CREATE SCHEMA IF NOT EXISTS aws_s3_local',
  'REVOKE ALL ON SCHEMA aws_s3_local FROM PUBLIC',
  `CREATE TABLE IF NOT EXISTS aws_s3_local.objects (
  bucket text NOT NULL, key text NOT NULL, object oid NOT NULL, bytes bigint NOT NULL,
  PRIMARY KEY (bucket, key))`,
  `CREATE OR REPLACE FUNCTION aws_s3_local.create_object(object_bucket text, object_key text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT lo_unlink(o.object) FROM aws_s3_local.objects o WHERE o.bucket = object_bucket AND o.key = object_key;
  DELETE FROM aws_s3_local.objects o WHERE o.bucket = object_bucket AND o.key = object_key;
  INSERT INTO aws_s3_local.objects VALUES (object_bucket, object_key, lo_from_bytea(0, ''), 0);
$$`,
  `CREATE OR REPLACE FUNCTION aws_s3_local.append_to_object(object_bucket text, object_key text, data bytea)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  stored aws_s3_local.objects;
BEGIN
  SELECT * INTO stored FROM aws_s3_local.objects o
  WHERE o.bucket = object_bucket AND o.key = object_key FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'aws_s3_local: s3://%/% was not created before appending to it', object_bucket, object_key
      USING ERRCODE = 'no_data_found';
  END IF;
  PERFORM lo_put(stored.object, stored.bytes, data);
  UPDATE aws_s3_local.objects o SET bytes = o.bytes + length(data)
  WHERE o.bucket = object_bucket AND o.key = object_key;
END
$$`,
  `CREATE OR REPLACE FUNCTION aws_s3_local.delete_objects(object_bucket text, key_prefix text)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH gone AS (
    DELETE FROM aws_s3_local.objects o
    WHERE o.bucket = object_bucket AND left(o.key, length(key_prefix)) = key_prefix
    RETURNING o.object)
  SELECT count(lo_unlink(object)) FROM gone;
$$`,
  `REVOKE ALL ON FUNCTION aws_s3_local.create_object(text, text),
  aws_s3_local.append_to_object(text, text, bytea), aws_s3_local.delete_objects(text, text) FROM PUBLIC`,
];

/**
 * The statements that create or replace the shim, reading objects from `source`: the files
 * under `s3Dir` (absolute), or the database's copy of them.
 */
export function awsS3ShimStatements(s3Dir: string, source: ShimObjectSource): string[] {
  const quotedName = '"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*';
  const columnList = `^\\s*(?:${quotedName})(?:\\s*,\\s*(?:${quotedName}))*\\s*$`;
  return [
    ...OBJECT_COPY_STATEMENTS,
    'CREATE SCHEMA IF NOT EXISTS aws_commons',
    'CREATE SCHEMA IF NOT EXISTS aws_s3',
    'GRANT USAGE ON SCHEMA aws_commons, aws_s3 TO PUBLIC',
    `DO $$
BEGIN
  IF pg_catalog.to_regtype('aws_commons._s3_uri_1') IS NULL THEN
    CREATE TYPE aws_commons._s3_uri_1 AS (bucket text, file_path text, region text);
  END IF;
END
$$`,
    `CREATE OR REPLACE FUNCTION aws_commons.create_s3_uri(bucket text, file_path text, region text)
RETURNS aws_commons._s3_uri_1
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ROW(bucket, file_path, region)::aws_commons._s3_uri_1 $$`,
    `CREATE OR REPLACE FUNCTION aws_s3.table_import_from_s3(
  table_name text, column_list text, options text, bucket text, file_path text, region text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  s3_dir CONSTANT text := ${literal(s3Dir)};
  in_database CONSTANT boolean := ${source === 'database'};
  -- SECURITY DEFINER changes current_user; the role setting still names who called.
  caller text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                      ELSE current_setting('role') END;
  relation regclass;
  object_path text;
  object_bytes bigint;
  stored_object oid;
  empty_object oid;
  imported bigint;
BEGIN
  IF bucket IS NULL OR bucket !~ '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' THEN
    RAISE EXCEPTION 'aws_s3 shim: bucket % is not an S3 bucket name', quote_nullable(bucket)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF file_path IS NULL OR file_path = '' OR file_path ~ '(^|/)(\\.|\\.\\.)?(/|$)' THEN
    RAISE EXCEPTION 'aws_s3 shim: file_path % cannot name an object in the local bucket folder', quote_nullable(file_path)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Keys must not start or end with /, or hold empty, "." or ".." segments.';
  END IF;
  -- Before PostgreSQL 16, to_regclass raises invalid_name (42602) on a name it cannot parse
  -- instead of returning NULL: either way, no such table.
  BEGIN
    relation := to_regclass(table_name);
  EXCEPTION WHEN invalid_name THEN
    relation := NULL;
  END;
  IF relation IS NULL THEN
    RAISE EXCEPTION 'relation % does not exist', quote_nullable(table_name)
      USING ERRCODE = 'undefined_table',
            HINT = 'The local aws_s3 shim resolves names without your search_path: write the table as "schema"."table".';
  END IF;
  IF NOT has_table_privilege(caller, relation, 'INSERT') THEN
    RAISE EXCEPTION 'permission denied for table %', relation USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF coalesce(column_list, '') <> '' AND column_list !~ ${literal(columnList)} THEN
    RAISE EXCEPTION 'aws_s3 shim: column_list % is not a list of column names', quote_literal(column_list)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF regexp_replace(coalesce(options, ''), '''(?:[^'']|'''')*''', '', 'g') ~ ';' THEN
    RAISE EXCEPTION 'aws_s3 shim: options % hold a ";" outside a string; give COPY options only', quote_literal(options)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;

  IF in_database THEN
    SELECT o.object, o.bytes INTO stored_object, object_bytes FROM aws_s3_local.objects o
    WHERE o.bucket = table_import_from_s3.bucket AND o.key = file_path;
    object_path := current_setting('data_directory') || '/aws_s3_local_import.' || pg_backend_pid();
  ELSE
    object_path := s3_dir || '/' || bucket || '/' || file_path;
    object_bytes := (pg_stat_file(object_path, true)).size;
  END IF;
  IF object_bytes IS NULL THEN
    RAISE EXCEPTION ${literal(auroraS3ErrorText(404))}
      USING ERRCODE = 'XX000', DETAIL = format('local aws_s3 shim: s3://%s/%s is not in %s%s', bucket, file_path,
        CASE WHEN in_database THEN 'the target database''s copy of ' ELSE '' END, s3_dir);
  END IF;
  IF object_bytes = 0 THEN
    RAISE EXCEPTION ${literal(auroraS3ErrorText(416))}
      USING ERRCODE = 'XX000', DETAIL = format('local aws_s3 shim: s3://%s/%s is empty (0 bytes)', bucket, file_path);
  END IF;

  IF in_database THEN
    PERFORM lo_export(stored_object, object_path);
  END IF;
  BEGIN
    EXECUTE format('COPY %s %s FROM %L %s',
      relation,
      CASE WHEN coalesce(column_list, '') = '' THEN '' ELSE '(' || column_list || ')' END,
      object_path,
      CASE WHEN coalesce(options, '') = '' THEN '' ELSE 'WITH ' || options END);
    GET DIAGNOSTICS imported = ROW_COUNT;
  EXCEPTION WHEN OTHERS THEN
    -- The file is written outside the transaction: empty it whether the COPY failed or not.
    IF in_database THEN
      empty_object := lo_from_bytea(0, '');
      PERFORM lo_export(empty_object, object_path);
    END IF;
    RAISE;
  END;
  IF in_database THEN
    empty_object := lo_from_bytea(0, '');
    PERFORM lo_export(empty_object, object_path);
    PERFORM lo_unlink(empty_object);
  END IF;
  RETURN format('%s rows imported into relation "%s" from file %s of %s bytes',
    imported, table_name, file_path, object_bytes);
END
$fn$`,
    `CREATE OR REPLACE FUNCTION aws_s3.table_import_from_s3(
  table_name text, column_list text, options text, s3_info aws_commons._s3_uri_1)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$ SELECT aws_s3.table_import_from_s3(table_name, column_list, options,
                                         (s3_info).bucket, (s3_info).file_path, (s3_info).region) $$`,
    'GRANT EXECUTE ON FUNCTION aws_commons.create_s3_uri(text, text, text) TO PUBLIC',
    'GRANT EXECUTE ON FUNCTION aws_s3.table_import_from_s3(text, text, text, text, text, text) TO PUBLIC',
    'GRANT EXECUTE ON FUNCTION aws_s3.table_import_from_s3(text, text, text, aws_commons._s3_uri_1) TO PUBLIC',
  ];
}

/**
 * Creates (or replaces) the shim in the database `admin` is connected to, and says where it
 * reads objects from: the folder `s3Dir` (created if missing) when the server reads it, the
 * database's copy otherwise (write objects through `DatabaseObjectCopy` then). `admin` must
 * be a superuser.
 */
export async function installAwsS3Shim(
  admin: pg.ClientBase,
  options: { readonly s3Dir: string },
): Promise<ShimObjectSource> {
  await mkdir(options.s3Dir, { recursive: true, mode: 0o755 });
  const s3Dir = await realpath(resolve(options.s3Dir));
  const role = await admin.query<{ name: string; superuser: boolean }>(
    'SELECT current_user AS name, rolsuper AS superuser FROM pg_catalog.pg_roles WHERE rolname = current_user',
  );
  if (!role.rows[0]?.superuser) {
    throw new ConfigError(
      `installAwsS3Shim needs a superuser connection (its import reads files on the server); ${JSON.stringify(role.rows[0]?.name)} is not one.`,
    );
  }
  const source: ShimObjectSource = (await serverReadsFolder(admin, s3Dir)) ? 'folder' : 'database';
  await admin.query('BEGIN');
  try {
    for (const statement of awsS3ShimStatements(s3Dir, source)) await admin.query(statement);
    await admin.query('COMMIT');
  } catch (error) {
    await admin.query('ROLLBACK');
    throw error;
  }
  return source;
}

/**
 * Whether the server reads `s3Dir` as this process writes it: a random file written here must
 * come back byte for byte (a server elsewhere may hold another folder at the same path).
 * Errors of file access (SQLSTATE 42501, class 58) mean no; any other error is raised.
 */
async function serverReadsFolder(admin: pg.ClientBase, s3Dir: string): Promise<boolean> {
  const token = randomBytes(16);
  const probe = join(s3Dir, `.aws-s3-shim-probe-${token.toString('hex')}`);
  await writeFile(probe, token, { mode: 0o644 });
  try {
    const { rows } = await admin.query<{ bytes: Buffer }>(
      'SELECT pg_catalog.pg_read_binary_file($1) AS bytes',
      [probe],
    );
    return token.equals(rows[0]!.bytes);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && (code === '42501' || code.startsWith('58'))) return false;
    throw error;
  } finally {
    await rm(probe, { force: true });
  }
}

/**
 * The local object store's writes, copied into the target database for a shim that reads
 * objects from there. Writes as the connection's role: the superuser that installed the shim.
 */
export class DatabaseObjectCopy implements ObjectCopy {
  constructor(private readonly admin: pg.Pool | pg.ClientBase) {}

  async createObject(bucket: string, key: string): Promise<void> {
    await this.admin.query('SELECT aws_s3_local.create_object($1, $2)', [bucket, key]);
  }

  async appendToObject(bucket: string, key: string, bytes: Buffer): Promise<void> {
    await this.admin.query('SELECT aws_s3_local.append_to_object($1, $2, $3)', [
      bucket,
      key,
      bytes,
    ]);
  }

  async deletePrefix(bucket: string, prefix: string): Promise<void> {
    await this.admin.query('SELECT aws_s3_local.delete_objects($1, $2)', [bucket, prefix]);
  }
}
