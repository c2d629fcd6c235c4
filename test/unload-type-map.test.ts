import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import type { FigureKind, SourceColumn } from '../lambdas/core/transfer/types';
import {
  figureKindFor,
  TYPE_MAP,
  targetTypeFor,
  typeMapEntryFor,
} from '../lambdas/core/unload/type-map';

const source = { schema: 'sales', name: 'Orders' };

function col(
  dataType: string,
  sizes: Partial<Omit<SourceColumn, 'name' | 'dataType'>> = {},
): SourceColumn {
  return {
    name: 'c',
    dataType,
    characterMaximumLength: null,
    numericPrecision: null,
    numericScale: null,
    ...sizes,
  };
}

describe('the type map', () => {
  // Every row of the documented map: information_schema's data_type -> the PostgreSQL type.
  it.each<[string, Partial<SourceColumn>, string, FigureKind]>([
    ['smallint', {}, 'smallint', 'integer'],
    ['integer', {}, 'integer', 'integer'],
    ['bigint', {}, 'bigint', 'integer'],
    ['numeric', { numericPrecision: 38, numericScale: 10 }, 'numeric(38,10)', 'decimal'],
    ['numeric', { numericPrecision: 18, numericScale: 0 }, 'numeric(18,0)', 'decimal'],
    ['numeric', {}, 'numeric', 'decimal'],
    ['real', {}, 'real', 'float4'],
    ['double precision', {}, 'double precision', 'float8'],
    ['boolean', {}, 'boolean', 'boolean'],
    ['character', { characterMaximumLength: 12 }, 'character(12)', 'nulls'],
    ['character', {}, 'bpchar', 'nulls'],
    ['character varying', { characterMaximumLength: 256 }, 'character varying(256)', 'octets'],
    ['character varying', { characterMaximumLength: 65535 }, 'character varying(65535)', 'octets'],
    ['character varying', {}, 'character varying', 'octets'],
    ['text', {}, 'text', 'octets'],
    ['date', {}, 'date', 'date'],
    ['time without time zone', {}, 'time without time zone', 'nulls'],
    ['time with time zone', {}, 'time with time zone', 'nulls'],
    ['timestamp without time zone', {}, 'timestamp without time zone', 'timestamp'],
    ['timestamp with time zone', {}, 'timestamp with time zone', 'timestamptz'],
    ['super', {}, 'jsonb', 'nulls'],
    ['jsonb', {}, 'jsonb', 'nulls'],
    ['json', {}, 'jsonb', 'nulls'],
    ['binary varying', {}, 'bytea', 'nulls'],
    ['varbyte', {}, 'bytea', 'nulls'],
    ['varbinary', {}, 'bytea', 'nulls'],
    ['bytea', {}, 'bytea', 'nulls'],
    ['geometry', {}, 'text', 'nulls'],
  ])('%s %j -> %s, figures %s', (dataType, sizes, postgres, figures) => {
    const column = col(dataType, sizes);
    expect(targetTypeFor(column, source)).toBe(postgres);
    expect(figureKindFor(column, postgres)).toBe(figures);
  });

  it('covers each data_type once and documents every entry', () => {
    const dataTypes = TYPE_MAP.flatMap((entry) => entry.dataTypes);
    expect(new Set(dataTypes).size).toBe(dataTypes.length);
    for (const entry of TYPE_MAP) {
      expect(entry.redshift).not.toBe('');
      expect(entry.postgres).not.toBe('');
      expect(entry.dataTypes.every((type) => type === type.toLowerCase())).toBe(true);
    }
  });

  it.each(['hllsketch', 'geography', 'interval', 'USER-DEFINED'])(
    'refuses %s, naming the column, its type and what to do',
    (dataType) => {
      const column = { ...col(dataType), name: 'Shape Col' };
      expect(typeMapEntryFor(column)).toBeNull();
      expect(() => targetTypeFor(column, source)).toThrowError(ConfigError);
      expect(() => targetTypeFor(column, source)).toThrowError(
        `column "Shape Col" of sales."Orders" has Redshift type ${JSON.stringify(dataType)}, which the type map does not cover`,
      );
      expect(() => targetTypeFor(column, source)).toThrowError(
        /Create the live table in Aurora yourself/,
      );
    },
  );
});

describe('figureKindFor with a live table', () => {
  it.each<[string, Partial<SourceColumn>, string, FigureKind]>([
    // Same family, different width: integers print the same.
    ['integer', {}, 'bigint', 'integer'],
    ['smallint', {}, 'integer', 'integer'],
    // Different families: only null counts compare.
    ['integer', {}, 'numeric(10,0)', 'nulls'],
    ['integer', {}, 'text', 'nulls'],
    ['real', {}, 'double precision', 'nulls'],
    ['date', {}, 'timestamp without time zone', 'nulls'],
    ['timestamp without time zone', {}, 'timestamp with time zone', 'nulls'],
    ['character varying', { characterMaximumLength: 10 }, 'character(10)', 'nulls'],
    ['character varying', { characterMaximumLength: 10 }, 'jsonb', 'nulls'],
    ['super', {}, 'text', 'nulls'],
    // Decimals print every digit of their scale: the scales must agree.
    ['numeric', { numericPrecision: 12, numericScale: 2 }, 'numeric(20,2)', 'decimal'],
    ['numeric', { numericPrecision: 12, numericScale: 2 }, 'numeric(12,3)', 'nulls'],
    ['numeric', { numericPrecision: 12, numericScale: 2 }, 'numeric', 'decimal'],
    ['numeric', {}, 'numeric(12,2)', 'nulls'],
    // Rounded timestamps would print differently.
    ['timestamp without time zone', {}, 'timestamp(3) without time zone', 'nulls'],
    ['timestamp without time zone', {}, 'timestamp(6) without time zone', 'timestamp'],
    ['timestamp with time zone', {}, 'timestamp(0) with time zone', 'nulls'],
    // Text into any varchar or text.
    ['character varying', { characterMaximumLength: 10 }, 'character varying(50)', 'octets'],
    ['character varying', { characterMaximumLength: 10 }, 'text', 'octets'],
    ['text', {}, 'character varying', 'octets'],
    // Unknown source types compare null counts only.
    ['hllsketch', {}, 'text', 'nulls'],
  ])('%s %j into %s -> %s', (dataType, sizes, targetType, figures) => {
    expect(figureKindFor(col(dataType, sizes), targetType)).toBe(figures);
  });
});
