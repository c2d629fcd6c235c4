/**
 * The Lambdas' environment, set by the CDK construct (the names are environment-variables.ts's,
 * typed, so a renamed variable fails to compile here): read once, checked, and turned
 * into the pipeline's settings and AWS targets. A missing variable is a deployment bug, named.
 */

import { ConfigError } from '../core/errors';
import type { PipelineSettings } from '../pipeline/deps';
import type { LambdaEnvironmentVariable } from './environment-variables';

export interface LambdaEnvironment {
  readonly settings: PipelineSettings;
  readonly aurora: {
    readonly resourceArn: string;
    readonly secretArn: string;
    readonly database: string;
  };
  readonly redshift:
    | {
        readonly clusterIdentifier: string;
        readonly database: string;
        readonly secretArn?: string;
        readonly dbUser?: string;
      }
    | { readonly workgroupName: string; readonly database: string; readonly secretArn?: string };
  readonly alarmTopicArn: string;
}

export function readEnvironment(env: NodeJS.ProcessEnv = process.env): LambdaEnvironment {
  const required = (name: LambdaEnvironmentVariable | 'AWS_REGION'): string => {
    const value = env[name];
    if (!value) {
      throw new ConfigError(
        `environment variable ${name} is not set; the function was not deployed by this app's stack. Redeploy with cdk deploy.`,
      );
    }
    return value;
  };
  const optional = (name: LambdaEnvironmentVariable): string | undefined => env[name] || undefined;
  const database = required('REDSHIFT_DATABASE');
  const secretArn = optional('REDSHIFT_SECRET_ARN');
  const workgroupName = optional('REDSHIFT_WORKGROUP_NAME');
  const dbUser = optional('REDSHIFT_DB_USER');
  const redshift = workgroupName
    ? { workgroupName, database, ...(secretArn ? { secretArn } : {}) }
    : {
        clusterIdentifier: required('REDSHIFT_CLUSTER_IDENTIFIER'),
        database,
        ...(secretArn ? { secretArn } : {}),
        ...(dbUser ? { dbUser } : {}),
      };
  const kmsKeyArn = optional('KMS_KEY_ARN');
  return {
    settings: {
      environment: required('ENVIRONMENT_NAME'),
      bucket: required('RUN_BUCKET'),
      unloadRoleArn: required('UNLOAD_ROLE_ARN'),
      ...(kmsKeyArn ? { kmsKeyArn } : {}),
      region: required('AWS_REGION'),
    },
    aurora: {
      resourceArn: required('AURORA_CLUSTER_ARN'),
      secretArn: required('AURORA_SECRET_ARN'),
      database: required('AURORA_DATABASE'),
    },
    redshift,
    alarmTopicArn: required('ALARM_TOPIC_ARN'),
  };
}
