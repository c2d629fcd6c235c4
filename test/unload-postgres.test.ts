/**
 * The generated SQL on a real database. PostgreSQL stands in for Redshift locally, so the
 * column query, the UNLOAD's inner SELECT (decoded from its literal by Redshift's rules) and
 * the figures query all run here over a table whose names hold every awkward character.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { type QualifiedName, quoteIdentifier, quoteQualified } from '../lambdas/core/identifiers';
import { buildFiguresQuery, parseFigures } from '../lambdas/core/transfer/figures';
import type { SyncTable, TableTransfer } from '../lambdas/core/transfer/types';
import {
  parseSourceColumns,
  SOURCE_COLUMNS_SQL,
  sourceColumnsParameters,
} from '../lambdas/core/unload/columns';
import { SourceTableError } from '../lambdas/core/unload/errors';
import { planColumns } from '../lambdas/core/unload/select-list';
import {
  buildUnloadSession,
  SESSION_SETTINGS,
  tableS3Prefix,
} from '../lambdas/core/unload/statement';
import { installRedshiftShims } from '../local/emulators/redshift-shims';
import { pointAtShims, SHIM_SCHEMA } from '../local/emulators/redshift-sql';
import { freshDatabase, type TestDatabase } from './support/db';

const source: QualifiedName = { schema: 'Sales Data', name: `Order "Items" it's C:\\tmp` };
const table: SyncTable = {
  source,
  target: { schema: 'public', name: 'order_items' },
  strategy: 'rename',
  allowEmpty: false,
};

let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('unload-postgres');
  sql = new PgSqlClient(admin);
  const relation = quoteQualified(source);
  await admin.query(`CREATE SCHEMA ${quoteIdentifier(source.schema)}`);
  await admin.query(`CREATE TABLE ${relation} (
    id bigint NOT NULL,
    "Note ""quoted""" character varying(20),
    "it's" text,
    "back\\slash" numeric(12,2),
    flag boolean,
    day date,
    at timestamp with time zone,
    local_at timestamp without time zone,
    payload json,
    raw bytea,
    f4 real,
    f8 double precision,
    clock time without time zone,
    code character(3)
  )`);
  await admin.query(`INSERT INTO ${relation} VALUES
    (1, 'a|b', E'back\\\\slash \\\\N', -1234567890.12, true, '2024-02-29',
     '2024-03-01 12:34:56.123456+02', '1999-12-31 23:59:59.999999', '{"k": "v\\"q", "n": null}',
     '\\x00ff5c7c0a', 1.1, 0.1, '23:59:59.5', 'ab'),
    (2, '', 'line1' || chr(10) || 'line2' || chr(13), 0.5, false, '1970-01-01',
     '1970-01-01 00:00:00+00', '2000-01-01 00:00:00', 'null', '\\x', 3.4028235e38, 1e-300,
     '00:00:00', 'xyz'),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  // The stand-in lacks Redshift's FROM_VARBYTE and (before PostgreSQL 17) JSON_SERIALIZE; the
  // local warehouse installs these shims and points JSON_SERIALIZE calls at its own, as here.
  await installRedshiftShims(admin);
  await admin.query(`SET search_path TO "$user", public, ${SHIM_SCHEMA}`);
});

async function discover(client: PgSqlClient) {
  return parseSourceColumns(
    await client.query(SOURCE_COLUMNS_SQL, sourceColumnsParameters(source)),
    source,
  );
}

function transfer(): TableTransfer {
  return {
    table,
    staging: { schema: 'public', name: 'staging' },
    columns: [],
    s3Prefix: tableS3Prefix('sync-bucket', 'run-1', table.target),
  };
}

/** Reads a Redshift string literal the way Redshift does (backslash escapes on). */
async function decodeRedshiftLiteral(literal: string): Promise<string> {
  await admin.query('SET standard_conforming_strings = off');
  await admin.query('SET escape_string_warning = off');
  try {
    const result = await admin.query<{ text: string }>(`SELECT ${literal} AS text`);
    return result.rows[0]!.text;
  } finally {
    await admin.query('SET standard_conforming_strings = on');
  }
}

describe('column discovery on the PostgreSQL stand-in', () => {
  it('lists the columns in order with their types, lengths and scales', async () => {
    const columns = await discover(sql);
    expect(columns.map((column) => [column.name, column.dataType])).toEqual([
      ['id', 'bigint'],
      ['Note "quoted"', 'character varying'],
      [`it's`, 'text'],
      ['back\\slash', 'numeric'],
      ['flag', 'boolean'],
      ['day', 'date'],
      ['at', 'timestamp with time zone'],
      ['local_at', 'timestamp without time zone'],
      ['payload', 'json'],
      ['raw', 'bytea'],
      ['f4', 'real'],
      ['f8', 'double precision'],
      ['clock', 'time without time zone'],
      ['code', 'character'],
    ]);
    expect(columns[1]).toMatchObject({ characterMaximumLength: 20, numericPrecision: null });
    expect(columns[3]).toMatchObject({ numericPrecision: 12, numericScale: 2 });
    expect(columns[13]).toMatchObject({ characterMaximumLength: 3 });
  });

  it('names the user when the table is missing or hidden from it', async () => {
    await admin.query(`CREATE ROLE unload_outsider LOGIN PASSWORD 'outsider'`);
    const outsider = new PgSqlClient(
      await db.connect('outsider', { user: 'unload_outsider', password: 'outsider' }),
    );
    await expect(discover(outsider)).rejects.toThrowError(SourceTableError);
    await expect(discover(outsider)).rejects.toThrowError(
      `source table "Sales Data"."Order ""Items"" it's C:\\tmp" does not exist or cannot be read by "unload_outsider"`,
    );
    await admin.query(`GRANT USAGE ON SCHEMA ${quoteIdentifier(source.schema)} TO unload_outsider`);
    await admin.query(`GRANT SELECT ON ${quoteQualified(source)} TO unload_outsider`);
    expect(await discover(outsider)).toHaveLength(14);
    const missing = { schema: 'Sales Data', name: 'orders' };
    await expect(
      sql
        .query(SOURCE_COLUMNS_SQL, sourceColumnsParameters(missing))
        .then((rows) => parseSourceColumns(rows, missing)),
    ).rejects.toThrowError(/"Sales Data"\.orders does not exist or cannot be read by/);
  });
});

describe('the UNLOAD query and the figures query on the stand-in', () => {
  it('selects every value in a form the target type reads back unchanged', async () => {
    const plan = planColumns(table, await discover(sql), null);
    const planned: TableTransfer = { ...transfer(), columns: plan.columns };
    const session = buildUnloadSession([planned], {
      iamRoleArn: 'arn:aws:iam::123456789012:role/unload',
      maxFileSizeMb: 100,
    });
    for (const setting of SESSION_SETTINGS) await sql.query(setting);
    // Each table's UNLOAD comes right before its figures query.
    const figuresAt = session.figures[0]!;
    const unload = session.batches[figuresAt.batch]![figuresAt.index - 1]!;
    const literal = /^UNLOAD \((.*)\)$/.exec(unload.split('\n')[0]!)![1]!;
    const query = await decodeRedshiftLiteral(literal);
    expect(query).toContain(`FROM "Sales Data"."Order ""Items"" it's C:\\tmp"`);

    const unloaded = await sql.query(pointAtShims(`${query} ORDER BY 1`));
    expect(unloaded.map((row) => Object.keys(row))[0]).toEqual(
      plan.columns.map((column) => column.name),
    );
    expect(unloaded[0]).toMatchObject({
      'Note "quoted"': 'a|b',
      "it's": 'back\\slash \\N',
      'back\\slash': '-1234567890.12',
      // Compact, as Redshift's JSON_SERIALIZE prints SUPER.
      payload: '{"k":"v\\"q","n":null}',
      raw: '\\x00ff5c7c0a',
    });
    expect(unloaded[1]).toMatchObject({ 'Note "quoted"': '', payload: 'null', raw: '\\x' });
    // A SQL NULL stays NULL in every column, never the JSON text null.
    expect(Object.values(unloaded[2]!).filter((value) => value !== null)).toEqual(['3']);

    // Read back as the target types (what COPY does with the text), nothing changes.
    const comparisons = plan.columns.map((column) => {
      const name = quoteIdentifier(column.name);
      return `bool_and(u.${name}::text::${column.targetType} IS NOT DISTINCT FROM s.${name}::${column.targetType}) AS ${name}`;
    });
    const [same] = await sql.query(
      pointAtShims(
        `SELECT ${comparisons.join(', ')} FROM (${query}) AS u JOIN ${quoteQualified(source)} AS s USING (id)`,
      ),
    );
    expect(Object.entries(same!).filter(([, equal]) => equal !== true)).toEqual([]);
  });

  it('counts the same figures on the source as on a copy typed by the plan', async () => {
    const plan = planColumns(table, await discover(sql), null);
    const session = buildUnloadSession([{ ...transfer(), columns: plan.columns }], {
      iamRoleArn: 'arn:aws:iam::123456789012:role/unload',
      maxFileSizeMb: 100,
    });
    const figuresAt = session.figures[0]!;
    const [row] = await sql.query(session.batches[figuresAt.batch]![figuresAt.index]!);
    const figures = parseFigures(row!, plan.columns);
    expect(figures.rows).toBe(3);
    const byName = new Map(figures.columns.map((column) => [column.column, column]));
    expect(byName.get('back\\slash')).toMatchObject({
      kind: 'decimal',
      nulls: 1,
      min: '-1234567890.12',
      max: '0.50',
    });
    expect(byName.get("it's")).toMatchObject({ kind: 'octets', nulls: 1, octets: '25' });
    expect(byName.get('flag')).toMatchObject({ kind: 'boolean', trues: 1 });
    expect(byName.get('at')).toMatchObject({
      min: '1970-01-01 00:00:00.000000',
      max: '2024-03-01 10:34:56.123456',
    });

    const staging = quoteQualified({ schema: 'public', name: 'staging copy' });
    await sql.query(
      `CREATE TABLE ${staging} (${plan.columns.map((column) => `${quoteIdentifier(column.name)} ${column.targetType}`).join(', ')})`,
    );
    const casts = plan.columns
      .map((column) => `${quoteIdentifier(column.name)}::text::${column.targetType}`)
      .join(', ');
    const unloadQuery = plan.columns
      .map((column) => `${column.selectExpression} AS ${quoteIdentifier(column.name)}`)
      .join(', ');
    await sql.query(
      pointAtShims(
        `INSERT INTO ${staging} SELECT ${casts} FROM (SELECT ${unloadQuery} FROM ${quoteQualified(source)}) AS unloaded`,
      ),
    );
    const [stagingRow] = await sql.query(buildFiguresQuery(staging, plan.columns));
    expect(parseFigures(stagingRow!, plan.columns)).toEqual(figures);
  });
});
