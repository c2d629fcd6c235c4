/**
 * The CDK app: `npx cdk synth|deploy -c env=<name>` builds the stack of `config/<name>.json`
 * (default `example`, so `npx cdk synth` works on a fresh clone with no AWS account).
 * A bad config file stops the app with the message naming the field, before anything is built.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { SyncError } from '../lambdas/core/errors';
import { loadEnvironment } from '../lib/environments';
import { SyncStack } from '../lib/sync-stack';

const app = new App();
const environmentName = String(app.node.tryGetContext('env') ?? 'example');
try {
  const { config, aws } = loadEnvironment(environmentName, '-c env');
  new SyncStack(app, { environmentName, runtimeConfig: config, aws });
} catch (error) {
  if (!(error instanceof SyncError)) throw error;
  console.error(error.message);
  process.exit(1);
}
// Any finding not acknowledged (with its reason, next to the resource) stops the synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
