/**
 * What an operator command prints when it fails: one line a person can act on for their own
 * mistakes, missing AWS credentials, AWS's answers and an unreachable network; a stack only
 * for a bug.
 */
import { spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { StateMachineDoesNotExist } from '@aws-sdk/client-sfn';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { describeFailure } from '../ops/run-command';

describe('describeFailure', () => {
  it('prints a SyncError and an AWS service error as name and message', () => {
    expect(describeFailure(new ConfigError('--env=nope: there is no config/nope.json'))).toBe(
      'ConfigError: --env=nope: there is no config/nope.json',
    );
    const missing = new StateMachineDoesNotExist({
      message: 'State Machine Does Not Exist',
      $metadata: {},
    });
    expect(describeFailure(missing)).toBe('StateMachineDoesNotExist: State Machine Does Not Exist');
  });

  it('says to check the network when a connection fails', async () => {
    // Port 1 (tcpmux): reserved, nothing listens, so the connection is refused.
    const refused = await new Promise<Error>((resolve) => {
      connect(1, '127.0.0.1').on('error', resolve);
    });
    expect(describeFailure(refused)).toBe(
      "Error: connect ECONNREFUSED 127.0.0.1:1; check the network (a proxy, a VPN) and the region in the environment's config file.",
    );
  });

  it('keeps the stack of anything else: a bug', () => {
    const bug = new TypeError("Cannot read properties of undefined (reading 'x')");
    expect(describeFailure(bug)).toBe(bug.stack);
  });
});

describe('npm run trigger without AWS credentials', () => {
  it('says in one line where credentials come from, no stack trace', () => {
    const environment: Record<string, string | undefined> = { ...process.env };
    for (const name of Object.keys(environment)) {
      if (name.startsWith('AWS_')) delete environment[name];
    }
    const result = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'ops/trigger-cli.ts', '--env', 'prod'],
      {
        encoding: 'utf8',
        env: {
          ...environment,
          AWS_CONFIG_FILE: '/nonexistent/aws-config',
          AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/aws-credentials',
          AWS_EC2_METADATA_DISABLED: 'true',
          // The SDK's notice that later versions need Node 22 is not what this test reads.
          NODE_NO_WARNINGS: '1',
        },
      },
    );
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toMatch(
      /^CredentialsProviderError: .*set AWS_PROFILE to a profile of the environment's account .* or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and run it again\.$/,
    );
  });
});
