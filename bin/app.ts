/**
 * The CDK app: `npx cdk synth|deploy -c env=<name>` builds the stack of `config/<name>.json`
 * (default `example`, so `npx cdk synth` works on a fresh clone with no AWS account).
 * A bad config file stops the app with the message naming the field, before anything is built.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { parseConfig, requireAwsSettings } from '../lambdas/core/config';
import { SyncError } from '../lambdas/core/errors';
import { SyncStack } from '../lib/sync-stack';

const CONFIG_DIRECTORY = 'config';
const ENVIRONMENT_NAME = /^[a-z][a-z0-9-]{0,31}$/;

function loadEnvironment(environmentName: string) {
  const available = readdirSync(CONFIG_DIRECTORY)
    .filter((file) => file.endsWith('.json'))
    .map((file) => file.slice(0, -'.json'.length));
  const origin = join(CONFIG_DIRECTORY, `${environmentName}.json`);
  if (!ENVIRONMENT_NAME.test(environmentName) || !existsSync(origin)) {
    throw new SyncError(
      `-c env=${environmentName}: there is no ${origin}; environments: ${available.join(', ')}. Environment names are lower-case letters, digits and hyphens.`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(origin, 'utf8'));
  } catch (error) {
    throw new SyncError(`${origin}: is not valid JSON (${(error as Error).message}).`);
  }
  const config = parseConfig(value, origin);
  return { config, aws: requireAwsSettings(config, origin) };
}

const app = new App();
const environmentName = String(app.node.tryGetContext('env') ?? 'example');
try {
  const { config, aws } = loadEnvironment(environmentName);
  new SyncStack(app, { environmentName, runtimeConfig: config, aws });
} catch (error) {
  if (!(error instanceof SyncError)) throw error;
  console.error(error.message);
  process.exit(1);
}
// Any finding not acknowledged (with its reason, next to the resource) stops the synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
