/**
 * The Lambdas' environment, set by the CDK construct (the names are environment-variables.ts's,
 * typed, so a renamed variable fails to compile here): parsed once by a schema and turned into
 * the pipeline's settings and AWS targets. A missing variable is a deployment bug, named.
 */
// A namespace import: see lambdas/core/config-fields.ts.
import * as z from 'zod';
import { ConfigError } from '../core/errors';
import type { LambdaEnvironmentVariable } from './environment-variables';

const set = z.string().min(1);
/** Absent or empty: not set, and left out. */
const optional = set.optional().catch(undefined);

const environment = z
  .object({
    AWS_REGION: set,
    ENVIRONMENT_NAME: set,
    RUN_BUCKET: set,
    UNLOAD_ROLE_ARN: set,
    KMS_KEY_ARN: optional,
    AURORA_CLUSTER_ARN: set,
    AURORA_SECRET_ARN: set,
    AURORA_DATABASE: set,
    REDSHIFT_DATABASE: set,
    REDSHIFT_SECRET_ARN: optional,
    REDSHIFT_DB_USER: optional,
    REDSHIFT_WORKGROUP_NAME: optional,
    // Set unless a workgroup is (Serverless).
    REDSHIFT_CLUSTER_IDENTIFIER: optional,
    ALARM_TOPIC_ARN: set,
  } satisfies Partial<Record<LambdaEnvironmentVariable | 'AWS_REGION', z.ZodType>>)
  .refine((env) => env.REDSHIFT_WORKGROUP_NAME || env.REDSHIFT_CLUSTER_IDENTIFIER, {
    path: ['REDSHIFT_CLUSTER_IDENTIFIER'],
    // Also when other variables are missing, so that one message names them all.
    when: () => true,
  })
  .transform((env) => {
    const database = env.REDSHIFT_DATABASE;
    const secretArn = env.REDSHIFT_SECRET_ARN ? { secretArn: env.REDSHIFT_SECRET_ARN } : {};
    return {
      settings: {
        environment: env.ENVIRONMENT_NAME,
        bucket: env.RUN_BUCKET,
        unloadRoleArn: env.UNLOAD_ROLE_ARN,
        ...(env.KMS_KEY_ARN ? { kmsKeyArn: env.KMS_KEY_ARN } : {}),
        region: env.AWS_REGION,
      },
      aurora: {
        resourceArn: env.AURORA_CLUSTER_ARN,
        secretArn: env.AURORA_SECRET_ARN,
        database: env.AURORA_DATABASE,
      },
      redshift: env.REDSHIFT_WORKGROUP_NAME
        ? { workgroupName: env.REDSHIFT_WORKGROUP_NAME, database, ...secretArn }
        : {
            clusterIdentifier: env.REDSHIFT_CLUSTER_IDENTIFIER!,
            database,
            ...secretArn,
            ...(env.REDSHIFT_DB_USER ? { dbUser: env.REDSHIFT_DB_USER } : {}),
          },
      alarmTopicArn: env.ALARM_TOPIC_ARN,
    };
  });

export type LambdaEnvironment = z.output<typeof environment>;

export function readEnvironment(env: NodeJS.ProcessEnv = process.env): LambdaEnvironment {
  const result = environment.safeParse(env);
  if (result.success) return result.data;
  const names = [...new Set(result.error.issues.map((issue) => String(issue.path[0])))];
  const [variable, is] = names.length === 1 ? ['variable', 'is'] : ['variables', 'are'];
  throw new ConfigError(
    `environment ${variable} ${names.join(', ')} ${is} not set; the function was not deployed by this app's stack. Redeploy with cdk deploy.`,
    { cause: result.error },
  );
}
