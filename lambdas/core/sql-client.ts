/**
 * The one way the core talks to a database. It mirrors the RDS Data API, the strictest of the
 * transports it runs on: one statement per call, no session carried between calls, parameters
 * named `:name` and scalar. The pg adapter (tests, local runs) enforces the same rules, so code
 * that works locally works over the Data API.
 *
 * Results come back as plain rows. Values a transport could render differently (bigint,
 * numeric, json) should be cast in SQL to `int`, `float8` or `text` and parsed here.
 */
export type SqlParameter = string | number | boolean | null;
export type SqlParameters = Readonly<Record<string, SqlParameter>>;
export type Row = Record<string, unknown>;

export interface QueryOptions {
  /**
   * The statement may outlast the transport's per-call limit; the transport lets it continue
   * server-side and the caller must confirm completion by other means.
   */
  readonly longRunning?: boolean;
}

export interface SqlClient {
  query<R extends Row = Row>(
    sql: string,
    parameters?: SqlParameters,
    options?: QueryOptions,
  ): Promise<R[]>;
}

/**
 * A SqlClient that can make several calls one transaction: the RDS Data API by transaction id
 * (BeginTransaction / CommitTransaction), node-postgres on one connection. Every call `fn`
 * makes through the client it is given joins the transaction; it commits when `fn` resolves
 * and rolls back when it throws.
 */
export interface TransactionalSqlClient extends SqlClient {
  withTransaction<T>(fn: (db: SqlClient) => Promise<T>): Promise<T>;
}

/**
 * Splits SQL text into code and the parts that are not code (string literals, quoted
 * identifiers, dollar-quoted bodies, comments), so that `:name` parameters and `;` separators
 * are only recognised in code.
 */
interface SqlToken {
  readonly kind: 'code' | 'literal';
  readonly text: string;
}

function tokenize(sql: string): SqlToken[] {
  const tokens: SqlToken[] = [];
  let code = '';
  let position = 0;
  const flushCode = () => {
    if (code) tokens.push({ kind: 'code', text: code });
    code = '';
  };
  const literalUntil = (end: number) => {
    flushCode();
    tokens.push({ kind: 'literal', text: sql.slice(position, end) });
    position = end;
  };
  while (position < sql.length) {
    const rest = sql.slice(position);
    if (rest.startsWith('--')) {
      const newline = sql.indexOf('\n', position);
      literalUntil(newline === -1 ? sql.length : newline);
    } else if (rest.startsWith('/*')) {
      literalUntil(endOfBlockComment(sql, position));
    } else if (rest[0] === "'" || rest[0] === '"') {
      const isEscapeString =
        rest[0] === "'" && /[eE]$/.test(code) && !/[A-Za-z0-9_]$/.test(code.slice(0, -1));
      literalUntil(endOfQuoted(sql, position, rest[0], isEscapeString));
    } else if (rest[0] === '$' && !/[A-Za-z0-9_]$/.test(code)) {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest)?.[0];
      if (tag) {
        const close = sql.indexOf(tag, position + tag.length);
        if (close === -1) throw new Error(`unterminated dollar-quoted string ${tag} in SQL`);
        literalUntil(close + tag.length);
      } else {
        code += rest[0];
        position += 1;
      }
    } else {
      code += rest[0];
      position += 1;
    }
  }
  flushCode();
  return tokens;
}

function endOfQuoted(sql: string, start: number, quote: string, backslashEscapes: boolean): number {
  let position = start + 1;
  while (position < sql.length) {
    const char = sql[position];
    if (backslashEscapes && char === '\\') {
      position += 2;
    } else if (char === quote) {
      if (sql[position + 1] === quote) position += 2;
      else return position + 1;
    } else {
      position += 1;
    }
  }
  throw new Error(`unterminated ${quote === "'" ? 'string literal' : 'quoted identifier'} in SQL`);
}

/**
 * Where a block comment that opens at `start` ends (just past its closing star-slash), or null when
 * it never closes. Block comments nest in PostgreSQL and Redshift alike.
 */
export function blockCommentEnd(sql: string, start: number): number | null {
  let depth = 0;
  let position = start;
  while (position < sql.length) {
    if (sql.startsWith('/*', position)) {
      depth += 1;
      position += 2;
    } else if (sql.startsWith('*/', position)) {
      depth -= 1;
      position += 2;
      if (depth === 0) return position;
    } else {
      position += 1;
    }
  }
  return null;
}

function endOfBlockComment(sql: string, start: number): number {
  const end = blockCommentEnd(sql, start);
  if (end === null) throw new Error('unterminated block comment in SQL');
  return end;
}

const NAMED_PARAMETER = /(?<!:):([A-Za-z_][A-Za-z0-9_]*)/g;

/**
 * Rewrites `:name` parameters to PostgreSQL's `$1, $2, ...` and orders the values to match.
 * `::type` casts and anything inside literals or comments are left alone. Refuses text with
 * more than one statement, and parameters that are used but not given (or given but unused).
 */
export function toPositionalParameters(
  sql: string,
  parameters: SqlParameters = {},
): { text: string; values: SqlParameter[] } {
  const tokens = tokenize(sql);
  const codeWithoutTrailingSemicolon = tokens
    .filter((token) => token.kind === 'code')
    .map((token) => token.text)
    .join(' ')
    .replace(/;\s*$/, '');
  if (codeWithoutTrailingSemicolon.includes(';')) {
    throw new Error(
      'SQL text holds more than one statement; send one statement per call (the RDS Data API refuses more).',
    );
  }
  const order = new Map<string, number>();
  const text = tokens
    .map((token) =>
      token.kind === 'literal'
        ? token.text
        : token.text.replace(NAMED_PARAMETER, (_match, name: string) => {
            if (!Object.hasOwn(parameters, name)) {
              throw new Error(`SQL parameter :${name} has no value`);
            }
            if (!order.has(name)) order.set(name, order.size + 1);
            return `$${order.get(name)}`;
          }),
    )
    .join('');
  const unused = Object.keys(parameters).filter((name) => !order.has(name));
  if (unused.length > 0) {
    throw new Error(
      `SQL parameters given but not used: ${unused.map((name) => `:${name}`).join(', ')}`,
    );
  }
  return { text, values: [...order.keys()].map((name) => parameters[name] ?? null) };
}
