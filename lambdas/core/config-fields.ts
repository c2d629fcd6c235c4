/**
 * The building blocks of the configuration's schema (zod), each carrying the message a person
 * reads when the value is wrong, and the one function that turns zod's issues into our
 * ConfigError: the file, the path of the bad field (`config/dev.json: tables[1].target: ...`)
 * and what to do. The checks are zod's, so the JSON Schema generated from the same schema
 * (config/schema.json) says what the parser says.
 */
// A namespace import, not `{ z }`: through `z` every locale of zod is reachable, and esbuild
// would bundle them all into each Lambda (test/lambda-bundle.test.ts).
import * as z from 'zod';
import { ConfigError } from './errors';

/** A value as the message quotes it, cut short. */
export function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The allowed key a typo most likely meant (at most 2 edits, or the same word in another case). */
export function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance =
      candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * An object with only the keys of `shape` (a misspelt option must not silently fall back to
 * its default); `example` shows its shape when the value is not an object at all. `unknownKey`
 * may explain a key people are expected to try.
 */
export function object<Shape extends z.ZodRawShape>(
  shape: Shape,
  example: string,
  unknownKey: (key: string) => string | undefined = () => undefined,
) {
  const allowed = Object.keys(shape).filter((key) => key !== '$schema');
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code !== 'unrecognized_keys') {
        return `must be a JSON object such as ${example}, not ${describe(issue.input)}.`;
      }
      const key = issue.keys[0]!;
      const suggestion = closest(key, allowed);
      return (
        unknownKey(key) ??
        `unknown key${suggestion ? `; did you mean "${suggestion}"?` : '.'} Allowed here: ${allowed.join(', ')}.`
      );
    },
  });
}

/** A count of something: a whole number, 0 or more. */
export const count = z.int().min(0);

/** A non-empty string; `example` is what one looks like. */
export function text(example: string) {
  const error = (issue: { input?: unknown }) =>
    `must be a non-empty string such as ${example}, not ${describe(issue.input)}.`;
  return z.string({ error }).refine((value) => value.trim() !== '', { error, abort: true });
}

/** A string matching `pattern`; `shape` says in words what is expected. */
export function matching(pattern: RegExp, shape: string) {
  return text(shape).regex(pattern, {
    error: (issue) => `${JSON.stringify(issue.input)} is not ${shape}.`,
    abort: true,
  });
}

export function flag(fallback: boolean) {
  return z
    .boolean({ error: (issue) => `must be true or false, not ${describe(issue.input)}.` })
    .default(fallback);
}

/** One of `choices`; `missing` is the message when the field is required and absent. */
export function oneOf<const T extends readonly [string, ...string[]]>(
  choices: T,
  missing?: string,
) {
  return z.enum(choices, {
    error: (issue) =>
      issue.input === undefined && missing
        ? missing
        : `must be one of ${choices.map((choice) => `"${choice}"`).join(', ')}, not ${describe(issue.input)}.`,
  });
}

/** A number within `limits`, whole unless `whole` is false, with its range and default in the message. */
export function bounded(
  limits: { readonly min: number; readonly max: number },
  unit: string,
  fallback: number,
  whole = true,
) {
  const error = (issue: { input?: unknown }) =>
    `must be a ${whole ? 'whole ' : ''}number of ${unit} from ${limits.min} to ${limits.max} (default ${fallback}), not ${describe(issue.input)}.`;
  return (whole ? z.int({ error }) : z.number({ error }))
    .min(limits.min, { error, abort: true })
    .max(limits.max, { error, abort: true })
    .default(fallback);
}

/** A string turned into something by a parser that throws ConfigError (the identifiers module); its message becomes the field's. */
export function parsedBy<T>(example: string, parse: (text: string) => T) {
  return text(example).transform((value, context) => {
    try {
      return parse(value);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      context.issues.push({ code: 'custom', message: error.message, input: value });
      return z.NEVER;
    }
  });
}

/** `tables[1].target` */
export function pathText(path: readonly PropertyKey[]): string {
  return path.reduce<string>(
    (text, key) =>
      typeof key === 'number' ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key),
    '',
  );
}

/**
 * Every problem, one line each, as `<origin>: <path>: <message>`. A union (onMaxWait) reports
 * the branch the value went into when one got past the value's own type; else the union's
 * own message.
 */
function lines(issues: readonly z.core.$ZodIssue[], origin: string): string[] {
  return issues.flatMap((issue) => {
    if (issue.code === 'invalid_union') {
      const branch = issue.errors.find((errors) => errors.every((inner) => inner.path.length > 0));
      if (branch) {
        return lines(
          branch.map((inner) => ({ ...inner, path: [...issue.path, ...inner.path] })),
          origin,
        );
      }
    }
    const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
    return [`${origin}: ${path.length === 0 ? '' : `${pathText(path)}: `}${issue.message}`];
  });
}

/** `value` parsed by `schema`, or a ConfigError naming `origin` and every bad field. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  origin: string,
): z.output<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new ConfigError(lines(result.error.issues, origin).join('\n'));
  return result.data;
}
