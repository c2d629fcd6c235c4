/** `locks.onMaxWait`: the single string as before, or one action per class of blocker. */
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS, parseRuntimeConfig, runtimeConfigJson } from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';
import { BLOCKER_CLASSES } from '../lambdas/core/locks/classes';

const FILE = 'config/dev.json';
const ORDERS = { source: 'sales.orders', target: 'public.orders' };
const parse = (onMaxWait: unknown) =>
  parseRuntimeConfig({ tables: [ORDERS], locks: { onMaxWait } }, FILE);

function errorOf(onMaxWait: unknown): string {
  try {
    parse(onMaxWait);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('locks.onMaxWait', () => {
  it('takes "fail" or "terminate" as before, "fail" by default', () => {
    expect(CONFIG_DEFAULTS.locks.onMaxWait).toBe('fail');
    expect(parseRuntimeConfig({ tables: [ORDERS] }, FILE).locks.onMaxWait).toBe('fail');
    expect(parse('terminate').locks.onMaxWait).toBe('terminate');
    expect(parse('fail').locks.onMaxWait).toBe('fail');
  });

  it('takes one action per class, kept as written, and reads back from the state machine the same', () => {
    const config = parse({ idleInTransaction: 'terminate', activeQuery: 'fail' });
    expect(config.locks.onMaxWait).toEqual({ idleInTransaction: 'terminate', activeQuery: 'fail' });
    const again = parseRuntimeConfig(runtimeConfigJson(config), 'the state machine');
    expect(again.locks.onMaxWait).toEqual(config.locks.onMaxWait);
    expect(parse({}).locks.onMaxWait).toEqual({});
  });

  it('refuses an unknown class by name, listing the classes', () => {
    expect(errorOf({ idleInTransactions: 'terminate' })).toBe(
      `config/dev.json: locks.onMaxWait.idleInTransactions: unknown key; did you mean "idleInTransaction"? Allowed here: ${BLOCKER_CLASSES.join(', ')}.`,
    );
    expect(errorOf({ autovacuum: 'terminate' })).toBe(
      'config/dev.json: locks.onMaxWait.autovacuum: a plain autovacuum never holds the swap up: it gives way when the swap asks for its lock. One run to prevent wraparound is antiWraparoundVacuum, which is never terminated.',
    );
  });

  it('refuses terminating a class that can never be terminated, saying why', () => {
    expect(errorOf({ preparedTransaction: 'terminate' })).toBe(
      'config/dev.json: locks.onMaxWait.preparedTransaction: a prepared transaction has no session to terminate; it is ended by COMMIT PREPARED or ROLLBACK PREPARED; only "fail" is allowed here.',
    );
    expect(errorOf({ antiWraparoundVacuum: 'terminate' })).toBe(
      'config/dev.json: locks.onMaxWait.antiWraparoundVacuum: an anti-wraparound autovacuum protects the database from transaction ID wraparound and is restarted at once if ended, so it is never terminated; only "fail" is allowed here.',
    );
    expect(
      parse({ preparedTransaction: 'fail', antiWraparoundVacuum: 'fail' }).locks,
    ).toMatchObject({ onMaxWait: { preparedTransaction: 'fail', antiWraparoundVacuum: 'fail' } });
  });

  it('refuses other values, naming the field', () => {
    expect(errorOf({ activeQuery: 'kill' })).toBe(
      'config/dev.json: locks.onMaxWait.activeQuery: must be one of "fail", "terminate", not "kill".',
    );
    expect(errorOf('kill')).toBe(
      'config/dev.json: locks.onMaxWait: must be one of "fail", "terminate", not "kill".',
    );
    expect(errorOf(['terminate'])).toMatch(
      /^config\/dev\.json: locks\.onMaxWait: must be "fail", "terminate" or an object with one of them per class/,
    );
    expect(errorOf(null)).toMatch(/^config\/dev\.json: locks\.onMaxWait: must be one of/);
  });
});
