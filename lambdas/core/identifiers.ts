/**
 * PostgreSQL identifiers: parsed from the `schema.table` syntax users write in config files and
 * execution inputs, validated, and always emitted quoted. Nothing a user typed reaches SQL any
 * other way.
 */
import * as z from 'zod';
import { ConfigError } from './errors';

/** A name as the run's files carry it, already validated when it was parsed from text. */
export const qualifiedName = z.object({ schema: z.string(), name: z.string() });
export type QualifiedName = z.infer<typeof qualifiedName>;

/** PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server, so refuse them. */
export const MAX_IDENTIFIER_BYTES = 63;

const UNQUOTED_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** Checks one identifier (already unquoted) and returns it. `what` names it in the error. */
export function validateIdentifier(identifier: string, what: string): string {
  if (identifier.length === 0) {
    throw new ConfigError(
      `${what} is empty: give a name, quoted with "double quotes" if it needs them.`,
    );
  }
  if (identifier.includes('\0')) {
    throw new ConfigError(`${what} contains a NUL character, which PostgreSQL names cannot hold.`);
  }
  const bytes = Buffer.byteLength(identifier, 'utf8');
  if (bytes > MAX_IDENTIFIER_BYTES) {
    throw new ConfigError(
      `${what} ${displayIdentifier(identifier)} is ${bytes} bytes long; PostgreSQL names hold at most ${MAX_IDENTIFIER_BYTES} bytes. Use a shorter name.`,
    );
  }
  return identifier;
}

/** `"name"`, with embedded double quotes doubled. Always quoted, so case and spaces survive. */
export function quoteIdentifier(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

/** `"schema"."name"` */
export function quoteQualified(name: QualifiedName): string {
  return `${quoteIdentifier(name.schema)}.${quoteIdentifier(name.name)}`;
}

/** How a person would write the identifier: bare when PostgreSQL allows it, quoted otherwise. */
export function displayIdentifier(identifier: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(identifier) ? identifier : quoteIdentifier(identifier);
}

/** `schema.name` as a person would write it, e.g. `sales."Order Items"`. */
export function displayQualified(name: QualifiedName): string {
  return `${displayIdentifier(name.schema)}.${displayIdentifier(name.name)}`;
}

export function sameQualifiedName(a: QualifiedName, b: QualifiedName): boolean {
  return a.schema === b.schema && a.name === b.name;
}

/**
 * Parses `schema.table` as PostgreSQL does: bare parts fold to lower case, parts in double
 * quotes keep their case and may hold any character (a doubled `""` stands for one `"`).
 * The schema is required, so that what runs never depends on a search_path.
 */
export function parseQualifiedName(text: string, what: string): QualifiedName {
  const parts = splitIdentifierParts(text.trim(), what);
  if (parts.length !== 2) {
    throw new ConfigError(
      `${what} ${JSON.stringify(text)} must be written schema.table (for example public.orders or sales."Order Items"); found ${parts.length} part${parts.length === 1 ? '' : 's'}.`,
    );
  }
  const [schema, name] = parts as [string, string];
  return {
    schema: validateIdentifier(schema, `The schema of ${what}`),
    name: validateIdentifier(name, `The table name of ${what}`),
  };
}

/** Parses one identifier, bare or double-quoted (e.g. a column name from a config file). */
export function parseIdentifier(text: string, what: string): string {
  const parts = splitIdentifierParts(text.trim(), what);
  if (parts.length !== 1) {
    throw new ConfigError(
      `${what} ${JSON.stringify(text)} must be a single name; put it in "double quotes" if it contains a dot.`,
    );
  }
  return validateIdentifier(parts[0]!, what);
}

function splitIdentifierParts(text: string, what: string): string[] {
  const parts: string[] = [];
  let position = 0;
  for (;;) {
    if (text[position] === '"') {
      let value = '';
      position += 1;
      for (;;) {
        const quote = text.indexOf('"', position);
        if (quote === -1) {
          throw new ConfigError(
            `${what} ${JSON.stringify(text)} has an unterminated double quote.`,
          );
        }
        value += text.slice(position, quote);
        if (text[quote + 1] === '"') {
          value += '"';
          position = quote + 2;
        } else {
          position = quote + 1;
          break;
        }
      }
      parts.push(value);
    } else {
      const match = /^[^."]*/.exec(text.slice(position))![0];
      const bare = match.trim();
      if (!UNQUOTED_IDENTIFIER.test(bare)) {
        throw new ConfigError(
          `${what} ${JSON.stringify(text)}: ${JSON.stringify(bare)} is not a valid bare name (letters, digits, _ and $, not starting with a digit). Put names with spaces, capitals or other characters in "double quotes".`,
        );
      }
      parts.push(bare.toLowerCase());
      position += match.length;
    }
    if (position === text.length) return parts;
    if (text[position] !== '.') {
      throw new ConfigError(
        `${what} ${JSON.stringify(text)} has unexpected text after a quoted name at position ${position + 1}; names are separated by a dot.`,
      );
    }
    position += 1;
  }
}

/** Splits `--tables` on commas outside double quotes: `sales."a,b",public.c`. */
export function splitTableList(text: string): string[] {
  const names: string[] = [];
  let current = '';
  let quoted = false;
  for (const character of text) {
    if (character === '"') quoted = !quoted;
    if (character === ',' && !quoted) {
      names.push(current.trim());
      current = '';
    } else {
      current += character;
    }
  }
  names.push(current.trim());
  return names.filter((name) => name.length > 0);
}
