/**
 * Redshift SQL as the emulators read it: a lexer that knows Redshift's string literals (a
 * backslash escapes, as in PostgreSQL before standard_conforming_strings), positions for error
 * messages, and the two rewrites a PostgreSQL stand-in needs before it runs Redshift SQL.
 */

import { SyncError } from '../../lambdas/core/errors';
import { blockCommentEnd } from '../../lambdas/core/sql-client';

/** SQL the emulators cannot read; the message names the problem and shows where. */
export class RedshiftSqlSyntaxError extends SyncError {}

export type TokenKind =
  | 'space'
  | 'comment'
  | 'string'
  | 'identifier'
  | 'word'
  | 'number'
  | 'punctuation';

export interface Token {
  readonly kind: TokenKind;
  /** The token as written. */
  readonly text: string;
  /** Offset of its first character in the SQL. */
  readonly start: number;
  /** `string`: the literal's value; `identifier`: the name without quotes; otherwise the text. */
  readonly value: string;
}

/** `line L, column C` and the line itself with a caret under the offset. */
export function describePosition(sql: string, offset: number): string {
  const before = sql.slice(0, offset);
  const line = before.split('\n').length;
  const lineStart = before.lastIndexOf('\n') + 1;
  const lineEnd = sql.indexOf('\n', offset);
  const text = sql.slice(lineStart, lineEnd === -1 ? sql.length : lineEnd);
  const column = offset - lineStart + 1;
  return `line ${line}, column ${column}:\n  ${text}\n  ${' '.repeat(column - 1)}^`;
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/**
 * Reads a single-quoted literal starting at `start` (the opening quote) with Redshift's rules:
 * `''` is a quote; a backslash escapes the next character (`\\` a backslash, `\'` a quote,
 * `\t` `\n` `\r` `\b` `\f` control characters, up to three octal digits a byte, anything else
 * itself). Returns the value and the offset after the closing quote.
 */
function readStringLiteral(sql: string, start: number): { value: string; end: number } {
  let value = '';
  let position = start + 1;
  while (position < sql.length) {
    const char = sql[position]!;
    if (char === "'") {
      if (sql[position + 1] === "'") {
        value += "'";
        position += 2;
        continue;
      }
      return { value, end: position + 1 };
    }
    if (char === '\\' && position + 1 < sql.length) {
      const next = sql[position + 1]!;
      const octal = /^[0-7]{1,3}/.exec(sql.slice(position + 1, position + 4))?.[0];
      if (octal) {
        value += String.fromCharCode(Number.parseInt(octal, 8));
        position += 1 + octal.length;
      } else {
        value += SIMPLE_ESCAPES[next] ?? next;
        position += 2;
      }
      continue;
    }
    value += char;
    position += 1;
  }
  throw new RedshiftSqlSyntaxError(
    `unterminated string literal starting at ${describePosition(sql, start)}`,
  );
}

function readQuotedIdentifier(sql: string, start: number): { value: string; end: number } {
  let value = '';
  let position = start + 1;
  while (position < sql.length) {
    const quote = sql.indexOf('"', position);
    if (quote === -1) break;
    value += sql.slice(position, quote);
    if (sql[quote + 1] === '"') {
      value += '"';
      position = quote + 2;
    } else {
      return { value, end: quote + 1 };
    }
  }
  throw new RedshiftSqlSyntaxError(
    `unterminated quoted identifier starting at ${describePosition(sql, start)}`,
  );
}

function endOfBlockComment(sql: string, start: number): number {
  const end = blockCommentEnd(sql, start);
  if (end === null) {
    throw new RedshiftSqlSyntaxError(
      `unterminated block comment starting at ${describePosition(sql, start)}`,
    );
  }
  return end;
}

const WORD = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/;
const NUMBER = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/;
const DOLLAR_TAG = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/;

/** Splits Redshift SQL into tokens; every character of the input belongs to one token. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let position = 0;
  const push = (kind: TokenKind, end: number, value?: string) => {
    const text = sql.slice(position, end);
    tokens.push({ kind, text, start: position, value: value ?? text });
    position = end;
  };
  while (position < sql.length) {
    const rest = sql.slice(position);
    const char = rest[0]!;
    if (/\s/.test(char)) {
      push('space', position + /^\s+/.exec(rest)![0].length);
    } else if (rest.startsWith('--')) {
      const newline = sql.indexOf('\n', position);
      push('comment', newline === -1 ? sql.length : newline);
    } else if (rest.startsWith('/*')) {
      push('comment', endOfBlockComment(sql, position));
    } else if (char === "'") {
      const literal = readStringLiteral(sql, position);
      push('string', literal.end, literal.value);
    } else if (char === '"') {
      const identifier = readQuotedIdentifier(sql, position);
      push('identifier', identifier.end, identifier.value);
    } else if (char === '$' && DOLLAR_TAG.test(rest)) {
      const tag = DOLLAR_TAG.exec(rest)![0];
      const close = sql.indexOf(tag, position + tag.length);
      if (close === -1) {
        throw new RedshiftSqlSyntaxError(
          `unterminated dollar-quoted string ${tag} starting at ${describePosition(sql, position)}`,
        );
      }
      push('string', close + tag.length, sql.slice(position + tag.length, close));
    } else if (WORD.test(rest)) {
      push('word', position + WORD.exec(rest)![0].length);
    } else if (NUMBER.test(rest)) {
      push('number', position + NUMBER.exec(rest)![0].length);
    } else {
      push('punctuation', position + 1);
    }
  }
  return tokens;
}

/** The tokens that carry meaning: no whitespace, no comments. */
export function significantTokens(sql: string): Token[] {
  return tokenize(sql).filter((token) => token.kind !== 'space' && token.kind !== 'comment');
}

/** Schema holding what the stand-in needs to run Redshift SQL (see redshift-shims.ts). */
export const SHIM_SCHEMA = 'redshift_shims';

/**
 * Rewrites what PostgreSQL reads differently. PostgreSQL 17 parses `JSON_SERIALIZE(x)` itself (SQL/JSON syntax, so no function can take
 * its place) and, given jsonb, returns the value's internal bytes instead of its text. Calls
 * are therefore pointed at the shim, which prints JSON as Redshift does. Only code changes:
 * literals, quoted names and comments are left as written.
 */
export function pointAtShims(sql: string): string {
  const tokens = tokenize(sql);
  return tokens
    .map((token, index) => {
      const word = token.kind === 'word' ? token.text.toLowerCase() : '';
      if (word !== 'json_serialize' && word !== 'sysdate') return token.text;
      const previous = tokens.slice(0, index).findLast((other) => other.kind !== 'space');
      const next = tokens.slice(index + 1).find((other) => other.kind !== 'space');
      if (previous?.text === '.') return token.text;
      if (word === 'json_serialize') {
        return next?.text === '(' ? `${SHIM_SCHEMA}.json_serialize` : token.text;
      }
      // Redshift's SYSDATE is the start of the current transaction, as a timestamp
      // (https://docs.aws.amazon.com/redshift/latest/dg/r_SYSDATE.html); PostgreSQL's
      // LOCALTIMESTAMP is the same ("the start time of the current transaction",
      // https://www.postgresql.org/docs/current/functions-datetime.html#FUNCTIONS-DATETIME-CURRENT).
      return next?.text === '(' ? token.text : 'LOCALTIMESTAMP';
    })
    .join('');
}

/**
 * Rewrites the Redshift Data API's `:name` parameters to PostgreSQL's `$1, $2, ...` and
 * orders their (text) values to match; `::type` casts and anything in literals, quoted names
 * and comments stay. Every parameter used must be given and every one given must be used.
 */
export function bindNamedParameters(
  sql: string,
  parameters: Readonly<Record<string, string>>,
): { text: string; values: string[] } {
  const tokens = tokenize(sql);
  const order = new Map<string, number>();
  const parts: string[] = [];
  for (let index = 0; index < tokens.length; index += 1) {
    const token = tokens[index]!;
    const name = tokens[index + 1];
    const isParameter =
      token.text === ':' &&
      tokens[index - 1]?.text !== ':' &&
      name?.kind === 'word' &&
      token.start + 1 === name.start;
    if (!isParameter) {
      parts.push(token.text);
      continue;
    }
    if (!Object.hasOwn(parameters, name.text)) {
      throw new RedshiftSqlSyntaxError(
        `parameter :${name.text} has no value; pass it in the statement's parameters (at ${describePosition(sql, token.start)})`,
      );
    }
    if (!order.has(name.text)) order.set(name.text, order.size + 1);
    parts.push(`$${order.get(name.text)}`);
    index += 1;
  }
  const unused = Object.keys(parameters).filter((name) => !order.has(name));
  if (unused.length > 0) {
    throw new RedshiftSqlSyntaxError(
      `parameters given but not used in the statement: ${unused.map((name) => `:${name}`).join(', ')}`,
    );
  }
  return { text: parts.join(''), values: [...order.keys()].map((name) => parameters[name]!) };
}
