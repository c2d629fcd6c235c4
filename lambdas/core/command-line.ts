/**
 * The flags of the commands a person types (`trigger`, `rollback`, `sync:local`), read the same
 * way by each: `--help` (or `-h`) asks for the usage, and a flag the command does not know, a
 * value missing or given to a switch, or a stray argument is refused with the usage, as a
 * ConfigError, instead of node:util's TypeError and its stack.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { CONFIG_LIMITS } from './config-defaults';
import { closest } from './config-fields';
import { ConfigError } from './errors';

type Options = NonNullable<ParseArgsConfig['options']>;

const HELP = { help: { type: 'boolean', short: 'h', default: false } } as const;

type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O & typeof HELP; strict: true; allowPositionals: false }>
>['values'];

/**
 * `args` read against `options`; `help` is true when the person asked for the usage (the
 * command prints `usage` and ends with 0). Anything else wrong throws a ConfigError ending
 * with `usage`.
 */
export function readFlags<const O extends Options>(
  args: readonly string[],
  options: O,
  usage: string,
): Values<O> {
  try {
    const { values } = parseArgs({
      args: [...args],
      options: { ...options, ...HELP },
      strict: true,
      allowPositionals: false,
    });
    return values as Values<O>;
  } catch (error) {
    // node:util marks its refusals with ERR_PARSE_ARGS_* codes; its messages name the flag.
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
      const message = (error as Error).message.replace(/\.?$/, '');
      const unknown = code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && /'--([^'=]+)/.exec(message)?.[1];
      const suggestion = unknown ? closest(unknown, Object.keys(options)) : undefined;
      throw new ConfigError(
        `${message}${suggestion ? `; did you mean --${suggestion}?` : '.'}\n${usage}`,
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * `--max-wait-seconds`'s value as a number, refused by the flag's name when it is not a whole
 * number of seconds in the configuration's range (Number() would turn "10m" into NaN, which the
 * execution input then reports as null, naming no flag).
 */
export function maxWaitSecondsFlag(flag: string, value: string): number {
  const { min, max } = CONFIG_LIMITS.maxWaitSeconds;
  const seconds = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!(seconds >= min && seconds <= max)) {
    throw new ConfigError(
      `${flag}: must be a whole number of seconds from ${min} to ${max}, not ${JSON.stringify(value)}.`,
    );
  }
  return seconds;
}
