/**
 * `npm run trigger -- --env prod [--tables t1,t2] [--dry-run] [--full-refresh] [--max-wait-seconds N] [--follow]`
 *
 * Starts a run of an environment's deployed state machine (AWS credentials from the usual
 * places: AWS_PROFILE, environment, SSO). With --follow, shows its states and lock waits
 * until it ends; the last line of stdout is then the run's output (its summary).
 */
import { randomUUID } from 'node:crypto';
import { SFNClient } from '@aws-sdk/client-sfn';
import { maxWaitSecondsFlag, readFlags } from '../lambdas/core/command-line';
import { selectTables } from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';
import { splitTableList } from '../lambdas/core/identifiers';
import { parseRunRequest } from '../lambdas/pipeline/request';
import { loadEnvironment } from '../lib/environments';
import { stateMachineNameFor } from '../lib/redshift-aurora-sync';
import { runCommand } from './run-command';
import { followRun, startRun } from './trigger';

const USAGE =
  'usage: npm run trigger -- --env <name> [--tables <schema.table,...>] [--dry-run] [--full-refresh] [--max-wait-seconds <n>] [--follow]';

async function main(): Promise<number> {
  const values = readFlags(
    process.argv.slice(2),
    {
      env: { type: 'string' },
      tables: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'full-refresh': { type: 'boolean', default: false },
      'max-wait-seconds': { type: 'string' },
      follow: { type: 'boolean', default: false },
    },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.env) throw new ConfigError(`--env is required.\n${USAGE}`);
  const environment = loadEnvironment(values.env, '--env');
  const tables = values.tables === undefined ? undefined : splitTableList(values.tables);
  // The same checks the run's first state makes, before anything is started.
  selectTables(environment.config, tables, '--tables');
  const request = parseRunRequest({
    ...(tables ? { tables } : {}),
    ...(values['dry-run'] ? { dryRun: true } : {}),
    ...(values['full-refresh'] ? { fullRefresh: true } : {}),
    ...(values['max-wait-seconds'] !== undefined
      ? { maxWaitSeconds: maxWaitSecondsFlag('--max-wait-seconds', values['max-wait-seconds']) }
      : {}),
  });
  const { account, region } = environment.aws;
  const stateMachineArn = `arn:aws:states:${region}:${account}:stateMachine:${stateMachineNameFor(environment.name)}`;
  const sfn = new SFNClient({ region });
  const name = `by-hand-${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomUUID().slice(0, 8)}`;
  const executionArn = await startRun(sfn, stateMachineArn, request, name, environment.name);
  process.stderr.write(`started ${executionArn}\n`);
  if (!values.follow) return 0;
  const result = await followRun(sfn, executionArn, {
    onLine: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    `${JSON.stringify(result.output ?? { status: result.status, error: result.error, cause: result.cause })}\n`,
  );
  return result.status === 'SUCCEEDED' ? 0 : 1;
}

runCommand(main);
