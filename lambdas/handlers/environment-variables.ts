/**
 * The environment variables the construct sets on every pipeline function, by name, with what
 * each holds. `environment.ts` beside it reads them; the construct in lib/ sets them. No CDK
 * imports: this is Lambda code, which lib/ builds on.
 */
export const LAMBDA_ENVIRONMENT_VARIABLES = {
  RUN_BUCKET: 'The bucket holding run files under runs/<runId>/.',
  KMS_KEY_ARN: 'The KMS key that encrypts the bucket; UNLOAD encrypts its files with it.',
  UNLOAD_ROLE_ARN: 'The IAM role Redshift assumes to write UNLOAD files to the bucket.',
  AURORA_CLUSTER_ARN: 'The Aurora cluster the RDS Data API calls go to.',
  AURORA_SECRET_ARN: 'The secret the RDS Data API signs in to Aurora with.',
  AURORA_DATABASE: 'The Aurora database holding the live tables.',
  REDSHIFT_CLUSTER_IDENTIFIER: 'A provisioned Redshift cluster (absent for Serverless).',
  REDSHIFT_WORKGROUP_NAME: 'A Redshift Serverless workgroup (absent for a cluster).',
  REDSHIFT_DATABASE: 'The Redshift database the sources are in.',
  REDSHIFT_SECRET_ARN:
    'The secret the Redshift Data API signs in with (absent with REDSHIFT_DB_USER or IAM).',
  REDSHIFT_DB_USER: 'The database user for temporary cluster credentials (absent with a secret).',
  ALARM_TOPIC_ARN: 'The SNS topic told about failed runs.',
  ENVIRONMENT_NAME: 'The environment (config file) this stack was deployed from, e.g. prod.',
  POWERTOOLS_SERVICE_NAME: 'The service name in logs, metrics and traces.',
  POWERTOOLS_METRICS_NAMESPACE: 'The CloudWatch namespace of the pipeline metrics.',
} as const;

export type LambdaEnvironmentVariable = keyof typeof LAMBDA_ENVIRONMENT_VARIABLES;

/** Powertools' service name and the metrics namespace, also used by the dashboard. */
export const SERVICE_NAME = 'redshift-aurora-sync';
export const METRICS_NAMESPACE = 'RedshiftAuroraSync';
