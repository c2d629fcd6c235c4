import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { readEnvironment } from '../lambdas/handlers/environment';

const BASE = {
  AWS_REGION: 'eu-west-1',
  ENVIRONMENT_NAME: 'prod',
  RUN_BUCKET: 'sync-runs',
  UNLOAD_ROLE_ARN: 'arn:aws:iam::123456789012:role/unload',
  KMS_KEY_ARN: 'arn:aws:kms:eu-west-1:123456789012:key/abc',
  AURORA_CLUSTER_ARN: 'arn:aws:rds:eu-west-1:123456789012:cluster:app',
  AURORA_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aurora',
  AURORA_DATABASE: 'app',
  REDSHIFT_DATABASE: 'analytics',
  ALARM_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:alarms',
};

describe('readEnvironment', () => {
  it('reads a cluster with a secret', () => {
    const environment = readEnvironment({
      ...BASE,
      REDSHIFT_CLUSTER_IDENTIFIER: 'analytics',
      REDSHIFT_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift',
    });
    expect(environment.redshift).toEqual({
      clusterIdentifier: 'analytics',
      database: 'analytics',
      secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift',
    });
    expect(environment.settings).toEqual({
      environment: 'prod',
      bucket: 'sync-runs',
      unloadRoleArn: 'arn:aws:iam::123456789012:role/unload',
      kmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/abc',
      region: 'eu-west-1',
    });
  });

  it('reads a Serverless workgroup', () => {
    expect(readEnvironment({ ...BASE, REDSHIFT_WORKGROUP_NAME: 'wg' }).redshift).toEqual({
      workgroupName: 'wg',
      database: 'analytics',
    });
  });

  it('names a missing variable and says how to fix it', () => {
    const { RUN_BUCKET: _, ...withoutBucket } = BASE;
    expect(() =>
      readEnvironment({ ...withoutBucket, REDSHIFT_CLUSTER_IDENTIFIER: 'analytics' }),
    ).toThrow(
      new ConfigError(
        "environment variable RUN_BUCKET is not set; the function was not deployed by this app's stack. Redeploy with cdk deploy.",
      ),
    );
  });

  it('takes an empty variable for one not set, and names every variable missing at once', () => {
    const { RUN_BUCKET: _, ...withoutBucket } = BASE;
    expect(() => readEnvironment({ ...withoutBucket, ALARM_TOPIC_ARN: '' })).toThrow(
      new ConfigError(
        "environment variables RUN_BUCKET, ALARM_TOPIC_ARN, REDSHIFT_CLUSTER_IDENTIFIER are not set; the function was not deployed by this app's stack. Redeploy with cdk deploy.",
      ),
    );
  });

  it('needs a cluster where no Serverless workgroup is set, and leaves empty optional variables out', () => {
    expect(() => readEnvironment({ ...BASE, REDSHIFT_CLUSTER_IDENTIFIER: '' })).toThrow(
      'environment variable REDSHIFT_CLUSTER_IDENTIFIER is not set',
    );
    const environment = readEnvironment({
      ...BASE,
      KMS_KEY_ARN: '',
      REDSHIFT_CLUSTER_IDENTIFIER: 'analytics',
      REDSHIFT_DB_USER: 'sync',
      REDSHIFT_SECRET_ARN: '',
    });
    expect(environment.redshift).toEqual({
      clusterIdentifier: 'analytics',
      database: 'analytics',
      dbUser: 'sync',
    });
    expect(environment.settings).not.toHaveProperty('kmsKeyArn');
  });
});
