import { describe, expect, it } from 'vitest';
import {
  displayQualified,
  parseIdentifier,
  parseQualifiedName,
  quoteQualified,
} from '../lambdas/core/identifiers';

describe('parseQualifiedName', () => {
  it('folds bare names to lower case, as PostgreSQL does', () => {
    expect(parseQualifiedName('Sales.Orders', 'target')).toEqual({
      schema: 'sales',
      name: 'orders',
    });
  });

  it('keeps quoted names exactly, including capitals, spaces, dots and quotes', () => {
    expect(parseQualifiedName('sales."Order Items"', 'target')).toEqual({
      schema: 'sales',
      name: 'Order Items',
    });
    expect(parseQualifiedName('"My.Schema"."say ""hi"""', 'target')).toEqual({
      schema: 'My.Schema',
      name: 'say "hi"',
    });
  });

  it('round-trips through quoting and display', () => {
    const name = parseQualifiedName('"Weird ""S"""."Order Items"', 'target');
    expect(quoteQualified(name)).toBe('"Weird ""S"""."Order Items"');
    expect(parseQualifiedName(displayQualified(name), 'again')).toEqual(name);
    expect(displayQualified({ schema: 'public', name: 'orders' })).toBe('public.orders');
  });

  it.each([
    ['orders', /must be written schema.table/],
    ['a.b.c', /found 3 parts/],
    ['public.', /is not a valid bare name/],
    ['public.order-items', /not a valid bare name.*double quotes/],
    ['public."orders', /unterminated double quote/],
    ['public."a"b', /unexpected text after a quoted name/],
    ['public.""', /is empty/],
    [`public."${'x'.repeat(64)}"`, /64 bytes long.*at most 63 bytes/],
    ['public.1orders', /not a valid bare name/],
    ['public.orders; drop table x', /not a valid bare name/],
  ])('refuses %j, naming what is wrong', (text, message) => {
    expect(() => parseQualifiedName(text, 'The target table')).toThrowError(message);
  });

  it('names the field the bad value came from', () => {
    expect(() => parseQualifiedName('nope', 'tables[2].target')).toThrowError(
      /^tables\[2\]\.target "nope"/,
    );
  });
});

describe('parseIdentifier', () => {
  it('parses one bare or quoted name', () => {
    expect(parseIdentifier('ID', 'primaryKey[0]')).toBe('id');
    expect(parseIdentifier('"Order Id"', 'primaryKey[0]')).toBe('Order Id');
    expect(() => parseIdentifier('a.b', 'primaryKey[0]')).toThrowError(/single name/);
  });
});
