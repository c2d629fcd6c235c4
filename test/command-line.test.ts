/**
 * The commands a person types answer `--help` with their usage and refuse a bad flag in one
 * line that names it and shows the usage: no stack trace, no run started.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { maxWaitSecondsFlag, readFlags } from '../lambdas/core/command-line';
import { ConfigError } from '../lambdas/core/errors';

const OPTIONS = {
  table: { type: 'string' },
  'dry-run': { type: 'boolean', default: false },
} as const;
const USAGE = 'usage: cmd --table <schema.table> [--dry-run]';

describe('readFlags', () => {
  it('reads the flags, and says when the usage was asked for', () => {
    expect(readFlags(['--table', 'public.orders'], OPTIONS, USAGE)).toEqual({
      table: 'public.orders',
      'dry-run': false,
      help: false,
    });
    expect(readFlags(['--help'], OPTIONS, USAGE).help).toBe(true);
    expect(readFlags(['-h'], OPTIONS, USAGE).help).toBe(true);
  });

  it.each([
    [['--tabel', 'x'], "Unknown option '--tabel'; did you mean --table?"],
    [['--dryrun'], "Unknown option '--dryrun'; did you mean --dry-run?"],
    [['--force'], "Unknown option '--force'."],
    [['--table'], "Option '--table <value>' argument missing."],
    [['--dry-run=yes'], "Option '--dry-run' does not take an argument."],
    [['public.orders'], "Unexpected argument 'public.orders'."],
  ])('refuses %j by name, with the usage', (args, message) => {
    expect(() => readFlags(args, OPTIONS, USAGE)).toThrow(ConfigError);
    try {
      readFlags(args, OPTIONS, USAGE);
    } catch (error) {
      const [first, ...rest] = (error as Error).message.split('\n');
      expect(first).toContain(message);
      expect(rest).toEqual([USAGE]);
    }
  });
});

describe('maxWaitSecondsFlag', () => {
  it('takes a whole number of seconds in the configuration range', () => {
    expect(maxWaitSecondsFlag('--max-wait-seconds', '0')).toBe(0);
    expect(maxWaitSecondsFlag('--max-wait-seconds', '600')).toBe(600);
    expect(maxWaitSecondsFlag('--max-wait-seconds', '86400')).toBe(86_400);
  });

  it.each(['10m', '', '1.5', '-1', '86401', '1e3'])('refuses %j naming the flag', (value) => {
    expect(() => maxWaitSecondsFlag('--max-wait-seconds', value)).toThrow(
      `--max-wait-seconds: must be a whole number of seconds from 0 to 86400, not ${JSON.stringify(value)}.`,
    );
  });
});

function command(script: string, args: readonly string[]) {
  const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    // No AWS credentials are needed for any of these: each ends before it calls AWS.
    env: { ...process.env, AWS_EC2_METADATA_DISABLED: 'true' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const COMMANDS = [
  ['trigger', 'ops/trigger-cli.ts', ['--env', 'prod'], 'usage: npm run trigger -- --env <name>'],
  [
    'rollback',
    'ops/rollback-cli.ts',
    ['--table', 'public.orders', '--env', 'prod'],
    'usage: npm run rollback -- --table <schema.table>',
  ],
  [
    'sync:local',
    'local/run/sync-local.ts',
    ['--config', 'config/example.json'],
    'usage: npm run sync:local -- --config <file>',
  ],
] as const;

describe.each(COMMANDS)('npm run %s', (_name, script, required, usage) => {
  it('prints its usage for --help and ends with 0', () => {
    const result = command(script, ['--help']);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.startsWith(usage)).toBe(true);
  });

  it('refuses an unknown flag in one line with the usage, no stack trace', () => {
    const result = command(script, [...required, '--dryrun']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ConfigError: Unknown option '--dryrun'/);
    expect(result.stderr).toContain(usage);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});

describe.each(COMMANDS.filter(([name]) => name !== 'rollback'))(
  'npm run %s --max-wait-seconds',
  (_name, script, required) => {
    it('refuses a value that is not a number of seconds by the flag, before anything starts', () => {
      const result = command(script, [...required, '--max-wait-seconds', '10m']);
      expect(result.status).toBe(1);
      expect(result.stderr).toContain(
        'ConfigError: --max-wait-seconds: must be a whole number of seconds from 0 to 86400, not "10m".',
      );
      expect(result.stderr).not.toContain('execution input');
    });
  },
);
