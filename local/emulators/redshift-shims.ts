/**
 * Redshift functions a PostgreSQL stand-in lacks, installed in the source database in schema
 * `redshift_shims` (which the local warehouse's sessions have on their search_path):
 * - `FROM_VARBYTE(bytea, format)`: Redshift's formats hex, binary, utf8 (utf-8, utf_8) and
 *   base64, case-insensitive, returning text (docs.aws.amazon.com/redshift/latest/dg/
 *   r_FROM_VARBYTE.html); base64 without PostgreSQL's line breaks.
 * - `json_serialize(jsonb | json)`: PostgreSQL 17 accepts `JSON_SERIALIZE(jsonb)` but returns
 *   the value's internal bytes (`JSON_SERIALIZE('{"a":1}'::jsonb)` is the one character
 *   U+0001), and no function can take the place of that SQL/JSON syntax, so the warehouse
 *   points calls at this one (pointAtShims). It prints JSON compactly, as Redshift's
 *   JSON_SERIALIZE does for SUPER, and a SQL NULL as the JSON text `null`. Like Redshift's
 *   (docs.aws.amazon.com/redshift/latest/dg/JSON_SERIALIZE.html) it fails when the text
 *   passes VARCHAR's limit, 65535 bytes.
 *   (`json_text` is its printer, without the limit.)
 * - `json_size(jsonb | json)`: the length in bytes of that text, without the limit
 *   (docs.aws.amazon.com/redshift/latest/dg/r_json_size.html: "functionally identical to
 *   OCTET_LENGTH(JSON_SERIALIZE)" but "does not have this limitation"); NULL for NULL.
 */
import type pg from 'pg';
import { SHIM_SCHEMA } from './redshift-sql';

/** Redshift's VARCHAR holds at most this many bytes (r_Character_types.html). */
const MAX_VARCHAR_BYTES = 65_535;

export const REDSHIFT_SHIM_STATEMENTS: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS ${SHIM_SCHEMA}`,
  `GRANT USAGE ON SCHEMA ${SHIM_SCHEMA} TO PUBLIC`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.from_varbyte(binary_value bytea, format text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  CASE lower(format)
    WHEN 'hex' THEN
      RETURN encode(binary_value, 'hex');
    WHEN 'base64' THEN
      RETURN translate(encode(binary_value, 'base64'), E'\\n', '');
    WHEN 'utf8', 'utf-8', 'utf_8' THEN
      RETURN convert_from(binary_value, 'UTF8');
    WHEN 'binary' THEN
      RETURN (SELECT coalesce(string_agg(get_byte(binary_value, i)::bit(8)::text, '' ORDER BY i), '')
                FROM generate_series(0, length(binary_value) - 1) AS i);
    ELSE
      RAISE EXCEPTION 'FROM_VARBYTE: format % is not one of hex, binary, utf8, base64', quote_literal(format)
        USING ERRCODE = 'invalid_parameter_value';
  END CASE;
END
$$`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.json_text(value jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  result text;
BEGIN
  IF value IS NULL THEN
    RETURN 'null';
  END IF;
  CASE jsonb_typeof(value)
    WHEN 'object' THEN
      SELECT '{' || coalesce(string_agg(to_jsonb(member.key)::text || ':' || ${SHIM_SCHEMA}.json_text(member.value), ',' ORDER BY member.n), '') || '}'
        INTO result FROM jsonb_each(value) WITH ORDINALITY AS member(key, value, n);
    WHEN 'array' THEN
      SELECT '[' || coalesce(string_agg(${SHIM_SCHEMA}.json_text(element.value), ',' ORDER BY element.n), '') || ']'
        INTO result FROM jsonb_array_elements(value) WITH ORDINALITY AS element(value, n);
    ELSE
      result := value::text;
  END CASE;
  RETURN result;
END
$$`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.json_serialize(value jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  result text := ${SHIM_SCHEMA}.json_text(value);
BEGIN
  IF octet_length(result) > ${MAX_VARCHAR_BYTES} THEN
    RAISE EXCEPTION 'JSON_SERIALIZE: the JSON text is % bytes, more than VARCHAR holds (${MAX_VARCHAR_BYTES})', octet_length(result)
      USING ERRCODE = 'string_data_right_truncation';
  END IF;
  RETURN result;
END
$$`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.json_serialize(value json)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ${SHIM_SCHEMA}.json_serialize(value::jsonb) $$`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.json_size(value jsonb)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT octet_length(${SHIM_SCHEMA}.json_text(value)) $$`,
  `CREATE OR REPLACE FUNCTION ${SHIM_SCHEMA}.json_size(value json)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ${SHIM_SCHEMA}.json_size(value::jsonb) $$`,
];

/** Creates or replaces the shims in the database `client` is connected to (needs CREATE there). */
export async function installRedshiftShims(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN');
  try {
    for (const statement of REDSHIFT_SHIM_STATEMENTS) await client.query(statement);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

/**
 * Installs the shims in one database the first time a session there needs them, once for
 * every caller; a failed install is tried again by the next caller.
 */
export class RedshiftShimInstaller {
  private installed: Promise<void> | null = null;

  /** `connect` gives a new, not yet connected client to the database. */
  constructor(private readonly connect: () => pg.Client) {}

  ensure(): Promise<void> {
    this.installed ??= (async () => {
      const session = this.connect();
      await session.connect();
      try {
        await installRedshiftShims(session);
      } finally {
        await session.end();
      }
    })().catch((error: unknown) => {
      this.installed = null;
      throw error;
    });
    return this.installed;
  }
}
