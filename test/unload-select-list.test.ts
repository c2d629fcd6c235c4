import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import type { SourceColumn, SyncTable, TargetColumn } from '../lambdas/core/transfer/types';
import {
  convertedBytesFor,
  planColumns,
  selectExpressionFor,
} from '../lambdas/core/unload/select-list';

function col(name: string, dataType: string, extra: Partial<SourceColumn> = {}): SourceColumn {
  return {
    name,
    dataType,
    characterMaximumLength: null,
    numericPrecision: null,
    numericScale: null,
    ...extra,
  };
}

function target(name: string, type: string, generated = false): TargetColumn {
  return { name, type, generated };
}

const table: SyncTable = {
  source: { schema: 'sales', name: 'Orders' },
  target: { schema: 'public', name: 'orders' },
  strategy: 'rename',
  allowEmpty: false,
};

const source = [
  col('id', 'bigint'),
  col('Total "EUR"', 'numeric', { numericPrecision: 12, numericScale: 2 }),
  col('note', 'character varying', { characterMaximumLength: 300 }),
  col('payload', 'super'),
  col('raw', 'binary varying'),
  col('shape', 'geometry'),
  col('internal_flag', 'boolean'),
];

describe('selectExpressionFor', () => {
  it('leaves columns PostgreSQL reads as printed alone, quoted', () => {
    expect(selectExpressionFor(col('Total "EUR"', 'numeric'))).toBe('"Total ""EUR"""');
    for (const type of ['integer', 'boolean', 'date', 'timestamp with time zone', 'text']) {
      expect(selectExpressionFor(col('c', type))).toBe('"c"');
    }
  });

  it('serializes SUPER, keeping a SQL NULL a NULL', () => {
    expect(selectExpressionFor(col('payload', 'super'))).toBe(
      'CASE WHEN "payload" IS NULL THEN NULL ELSE JSON_SERIALIZE("payload") END',
    );
    // The local stand-in's JSON types are SUPER too (the emulator answers JSON_SERIALIZE).
    expect(selectExpressionFor(col('payload', 'jsonb'))).toBe(
      selectExpressionFor(col('payload', 'super')),
    );
  });

  it('puts the quoted name into every place of the template, whatever it holds', () => {
    expect(selectExpressionFor(col('{column}', 'super'))).toBe(
      'CASE WHEN "{column}" IS NULL THEN NULL ELSE JSON_SERIALIZE("{column}") END',
    );
  });

  it("writes VARBYTE in bytea's hex form without a backslash in the SQL", () => {
    const expression = selectExpressionFor(col('raw', 'binary varying'));
    expect(expression).toBe(`CHR(92) || 'x' || FROM_VARBYTE("raw", 'hex')`);
    expect(expression).not.toContain('\\');
  });

  it('widens REAL to DOUBLE PRECISION, whose 17 printed digits read back as the same REAL', () => {
    expect(selectExpressionFor(col('share', 'real'))).toBe('CAST("share" AS DOUBLE PRECISION)');
    expect(selectExpressionFor(col('ratio', 'double precision'))).toBe('"ratio"');
  });

  it('writes GEOMETRY as hex EWKB', () => {
    expect(selectExpressionFor(col('shape', 'geometry'))).toBe('ST_AsHexEWKB("shape")');
  });
});

describe('convertedBytesFor', () => {
  it('measures the text of SUPER (JSON_SIZE), VARBYTE (\\x and hex) and GEOMETRY (hex EWKB), and of nothing else', () => {
    expect(convertedBytesFor(col('Doc "1"', 'super'))).toBe('JSON_SIZE("Doc ""1""")');
    expect(convertedBytesFor(col('raw', 'binary varying'))).toBe('2 + 2 * OCTET_LENGTH("raw")');
    expect(convertedBytesFor(col('shape', 'geometry'))).toBe(
      '2 * OCTET_LENGTH(ST_AsEWKB("shape"))',
    );
    for (const type of ['character varying', 'numeric', 'unknown type']) {
      expect(convertedBytesFor(col('x', type))).toBeUndefined();
    }
  });
});

describe('planColumns', () => {
  it('on a first run takes every source column, typed by the type map', () => {
    const plan = planColumns(table, source, null);
    expect(plan.unsynced).toEqual([]);
    expect(plan.columns.map((column) => [column.name, column.targetType, column.figures])).toEqual([
      ['id', 'bigint', 'integer'],
      ['Total "EUR"', 'numeric(12,2)', 'decimal'],
      ['note', 'character varying(300)', 'octets'],
      ['payload', 'jsonb', 'nulls'],
      ['raw', 'bytea', 'nulls'],
      ['shape', 'text', 'nulls'],
      ['internal_flag', 'boolean', 'boolean'],
    ]);
    expect(plan.columns[3]!.selectExpression).toContain('JSON_SERIALIZE');
  });

  it("follows the live table's order and types, leaving out generated and extra columns", () => {
    const plan = planColumns(table, source, [
      target('note', 'text'),
      target('id', 'integer'),
      target('id_doubled', 'bigint', true),
      target('Total "EUR"', 'numeric(14,3)'),
      target('payload', 'jsonb'),
      target('raw', 'bytea'),
      target('shape', 'text'),
    ]);
    expect(plan.columns.map((column) => [column.name, column.targetType, column.figures])).toEqual([
      ['note', 'text', 'octets'],
      ['id', 'integer', 'integer'],
      ['Total "EUR"', 'numeric(14,3)', 'nulls'],
      ['payload', 'jsonb', 'nulls'],
      ['raw', 'bytea', 'nulls'],
      ['shape', 'text', 'nulls'],
    ]);
    expect(plan.unsynced).toEqual(['internal_flag']);
  });

  it('lists a source column the live table generates itself as not synced', () => {
    const plan = planColumns(
      table,
      [col('id', 'integer'), col('total', 'integer')],
      [target('id', 'integer'), target('total', 'integer', true)],
    );
    expect(plan.columns.map((column) => column.name)).toEqual(['id']);
    expect(plan.unsynced).toEqual(['total']);
  });

  it('takes a live table column of a type the map lacks as it is: the user chose it', () => {
    const plan = planColumns(table, [col('sketch', 'hllsketch')], [target('sketch', 'text')]);
    expect(plan.columns[0]).toEqual({
      name: 'sketch',
      selectExpression: '"sketch"',
      targetType: 'text',
      figures: 'nulls',
    });
  });

  it('refuses live columns the source lacks, naming both tables, the columns and the fix', () => {
    const live = [target('id', 'integer'), target('Region Code', 'text'), target('vat', 'numeric')];
    expect(() => planColumns(table, source, live)).toThrowError(ConfigError);
    expect(() => planColumns(table, source, live)).toThrowError(
      'live table public.orders has columns "Region Code", vat that source table sales."Orders" lacks. Add them to the Redshift table (or to a view you sync instead), or drop them from the live table, then run again.',
    );
    expect(() => planColumns(table, source, [target('vat', 'numeric')])).toThrowError(
      /has column vat that source table sales\."Orders" lacks\. Add it/,
    );
  });

  it('matches names exactly: case matters', () => {
    expect(() =>
      planColumns(table, [col('ID', 'integer')], [target('id', 'integer')]),
    ).toThrowError(/has column id that source table/);
  });

  it('refuses an unsupported type on a first run, and a target with nothing to fill', () => {
    expect(() => planColumns(table, [col('g', 'geography')], null)).toThrowError(
      /column g of sales\."Orders" has Redshift type "geography"/,
    );
    expect(() =>
      planColumns(table, [col('id', 'integer')], [target('id', 'integer', true)]),
    ).toThrowError(/no columns to fill/);
    expect(() => planColumns(table, [], null)).toThrowError(/has no columns/);
  });
});
