/**
 * One environment's stack: `RedshiftAuroraSync-<env>`, deployed to the account and region its
 * config file names, holding the whole pipeline.
 */
import { Stack, type StackProps, Tags } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import type { AwsSettings, RuntimeConfig } from '../lambdas/core/config';
import { RedshiftAuroraSync } from './redshift-aurora-sync';

export interface SyncStackProps extends StackProps {
  /** The environment's name: the config file `config/<name>.json` it was built from. */
  readonly environmentName: string;
  readonly runtimeConfig: RuntimeConfig;
  readonly aws: AwsSettings;
}

export function stackNameFor(environmentName: string): string {
  return `RedshiftAuroraSync-${environmentName}`;
}

export class SyncStack extends Stack {
  readonly sync: RedshiftAuroraSync;

  constructor(scope: Construct, props: SyncStackProps) {
    const { environmentName, runtimeConfig, aws, ...stackProps } = props;
    super(scope, stackNameFor(environmentName), {
      description: `Moves tables from Redshift into Aurora PostgreSQL (environment ${environmentName})`,
      env: { account: aws.account, region: aws.region },
      ...stackProps,
    });
    Tags.of(this).add('application', 'redshift-aurora-sync');
    Tags.of(this).add('environment', environmentName);
    this.sync = new RedshiftAuroraSync(this, 'Sync', { environmentName, runtimeConfig, aws });
  }
}
