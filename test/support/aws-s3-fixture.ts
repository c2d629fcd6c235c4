/**
 * A test-only stand-in for Aurora's `aws_s3` extension, with Aurora's signatures: objects are
 * files under `s3Dir/<bucket>/<key>`, read by a server-side COPY. Stays until the local
 * emulators' shim lands on main; then the tests use that one instead.
 */
import { chmod, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type pg from 'pg';

/** A folder standing in for S3, readable by the PostgreSQL server's own OS user. */
export async function makeS3Dir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'aws-s3-fixture-'));
  await chmod(dir, 0o755);
  return dir;
}

/** Writes one object; returns its size in bytes. */
export async function putObject(
  s3Dir: string,
  bucket: string,
  key: string,
  body: string,
): Promise<number> {
  const path = join(s3Dir, bucket, key);
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeFile(path, body, { mode: 0o644 });
  return Buffer.byteLength(body);
}

/**
 * Installs `aws_commons.create_s3_uri` and `aws_s3.table_import_from_s3` (the s3_info form).
 * As on Aurora, table_name and column_list go into the COPY as SQL text, and the result reads
 * `N rows imported into relation "t" from file k of B bytes`. Needs a superuser `admin`.
 */
export async function installAwsS3Shim(admin: pg.Client, options: { s3Dir: string }) {
  const root = options.s3Dir.replaceAll("'", "''");
  await admin.query(`
    CREATE SCHEMA IF NOT EXISTS aws_commons;
    CREATE SCHEMA IF NOT EXISTS aws_s3;
    CREATE TYPE aws_commons._s3_uri_1 AS (bucket text, file_path text, region text);
    CREATE FUNCTION aws_commons.create_s3_uri(s3_bucket text, s3_key text, aws_region text)
    RETURNS aws_commons._s3_uri_1 LANGUAGE sql IMMUTABLE
    AS $$ SELECT ROW(s3_bucket, s3_key, aws_region)::aws_commons._s3_uri_1 $$;
    CREATE FUNCTION aws_s3.table_import_from_s3(
      table_name text, column_list text, options text, s3_info aws_commons._s3_uri_1)
    RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $fn$
    DECLARE
      v_path text := '${root}/' || s3_info.bucket || '/' || s3_info.file_path;
      v_rows bigint;
    BEGIN
      EXECUTE format('COPY %s %s FROM %L %s', table_name,
                     CASE WHEN column_list <> '' THEN '(' || column_list || ')' ELSE '' END,
                     v_path, options);
      GET DIAGNOSTICS v_rows = ROW_COUNT;
      RETURN format('%s rows imported into relation "%s" from file %s of %s bytes',
                    v_rows, table_name, s3_info.file_path, (pg_stat_file(v_path)).size);
    END
    $fn$;
    GRANT USAGE ON SCHEMA aws_commons, aws_s3 TO PUBLIC;
  `);
}

/** One field as UNLOAD's text format writes it: `\N` for NULL, backslash before `\`, `|`, LF, CR. */
function textField(value: string | number | boolean | null): string {
  if (value === null) return '\\N';
  const text = typeof value === 'boolean' ? (value ? 't' : 'f') : String(value);
  return text.replace(/[\\|\n\r]/g, (char) => `\\${char}`);
}

/** Rows in UNLOAD's text format (`|` between fields, one row per line). */
export function textFormat(
  rows: readonly (readonly (string | number | boolean | null)[])[],
): string {
  return rows.map((row) => `${row.map(textField).join('|')}\n`).join('');
}
