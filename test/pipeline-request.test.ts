import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { parseRunRequest } from '../lambdas/pipeline/request';
import { caughtError } from '../lambdas/pipeline/steps/finish';

describe('parseRunRequest', () => {
  it("takes the schedule's empty input as a full run", () => {
    expect(parseRunRequest({})).toEqual({ dryRun: false, fullRefresh: false });
    expect(parseRunRequest(undefined)).toEqual({ dryRun: false, fullRefresh: false });
  });

  it("takes a hand-started run's tables, dry run and wait override", () => {
    expect(
      parseRunRequest({ tables: ['public.orders'], dryRun: true, maxWaitSeconds: 600 }),
    ).toEqual({ tables: ['public.orders'], dryRun: true, maxWaitSeconds: 600, fullRefresh: false });
    expect(parseRunRequest({ fullRefresh: true })).toEqual({ dryRun: false, fullRefresh: true });
  });

  it.each([
    [[], /^the execution input: must be a JSON object such as .*, not \[\]\.$/],
    ['public.orders', /must be a JSON object/],
    [
      { table: ['public.orders'] },
      'the execution input: table: unknown key; did you mean "tables"? Allowed here: tables, dryRun, maxWaitSeconds, fullRefresh.',
    ],
    [{ tables: 'public.orders' }, /: tables: must be a non-empty list of configured targets/],
    [{ tables: [] }, /: tables: must be a non-empty list of configured targets/],
    [
      { tables: [42] },
      /: tables\[0\]: must be a non-empty string such as "public.orders", not 42\./,
    ],
    [{ dryRun: 'yes' }, /: dryRun: must be true or false, not "yes"/],
    [{ fullRefresh: 1 }, /: fullRefresh: must be true or false, not 1/],
    [
      { maxWaitSeconds: -1 },
      /: maxWaitSeconds: must be a whole number of seconds from 0 to 86400, not -1\./,
    ],
    [{ maxWaitSeconds: 1.5 }, /not 1.5/],
    [{ maxWaitSeconds: 86_401 }, /not 86401/],
  ])('refuses %j, saying what is wrong', (input, message) => {
    expect(() => parseRunRequest(input)).toThrow(ConfigError);
    expect(() => parseRunRequest(input)).toThrow(message);
  });
});

describe('caughtError', () => {
  it("reads a Lambda error's JSON cause down to its message", () => {
    expect(
      caughtError({
        Error: 'QualityGateError',
        Cause: JSON.stringify({
          errorType: 'QualityGateError',
          errorMessage: 'rows differ',
          trace: [],
        }),
      }),
    ).toEqual({ name: 'QualityGateError', message: 'rows differ' });
  });

  it('keeps a plain-text cause as it is', () => {
    expect(caughtError({ Error: 'States.Timeout', Cause: 'Task timed out' })).toEqual({
      name: 'States.Timeout',
      message: 'Task timed out',
    });
  });
});
