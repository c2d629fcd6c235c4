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
 */
import { mkdir, realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type pg from 'pg';
import { ConfigError } from '../../lambdas/core/errors';

/** The Aurora error texts the shim reproduces (HTTP status in the message, SQLSTATE XX000). */
export function auroraS3ErrorText(httpStatus: 404 | 416): string {
  return `Unable to validate pre-signed URL. Error: HTTP ${httpStatus}. Check your arguments and try again.`;
}

function literal(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}

/** The statements that create or replace the shim, reading objects under `s3Dir` (absolute). */
export function awsS3ShimStatements(s3Dir: string): string[] {
  const quotedName = '"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*';
  const columnList = `^\\s*(?:${quotedName})(?:\\s*,\\s*(?:${quotedName}))*\\s*$`;
  return [
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
  -- SECURITY DEFINER changes current_user; the role setting still names who called.
  caller text := CASE WHEN current_setting('role') = 'none' THEN session_user::text
                      ELSE current_setting('role') END;
  relation regclass;
  object_path text;
  object_bytes bigint;
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

  object_path := s3_dir || '/' || bucket || '/' || file_path;
  object_bytes := (pg_stat_file(object_path, true)).size;
  IF object_bytes IS NULL THEN
    RAISE EXCEPTION ${literal(auroraS3ErrorText(404))}
      USING ERRCODE = 'XX000', DETAIL = format('local aws_s3 shim: s3://%s/%s is not in %s', bucket, file_path, s3_dir);
  END IF;
  IF object_bytes = 0 THEN
    RAISE EXCEPTION ${literal(auroraS3ErrorText(416))}
      USING ERRCODE = 'XX000', DETAIL = format('local aws_s3 shim: s3://%s/%s is empty (0 bytes)', bucket, file_path);
  END IF;

  EXECUTE format('COPY %s %s FROM %L %s',
    relation,
    CASE WHEN coalesce(column_list, '') = '' THEN '' ELSE '(' || column_list || ')' END,
    object_path,
    CASE WHEN coalesce(options, '') = '' THEN '' ELSE 'WITH ' || options END);
  GET DIAGNOSTICS imported = ROW_COUNT;
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
 * Creates (or replaces) the shim in the database `admin` is connected to. `admin` must be a
 * superuser; the PostgreSQL server must be able to read `s3Dir` (created if missing).
 */
export async function installAwsS3Shim(
  admin: pg.ClientBase,
  options: { readonly s3Dir: string },
): Promise<void> {
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
  try {
    await admin.query('SELECT pg_catalog.pg_stat_file($1)', [s3Dir]);
  } catch (error) {
    throw new ConfigError(
      `the PostgreSQL server cannot read the local bucket folder ${s3Dir} (${(error as Error).message}); make it and its parent folders readable by the server's user (e.g. chmod 755).`,
      { cause: error },
    );
  }
  await admin.query('BEGIN');
  try {
    for (const statement of awsS3ShimStatements(s3Dir)) await admin.query(statement);
    await admin.query('COMMIT');
  } catch (error) {
    await admin.query('ROLLBACK');
    throw error;
  }
}
