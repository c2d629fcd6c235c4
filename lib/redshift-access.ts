/**
 * Where the pipeline reaches Redshift and how it signs in, as the construct parts take it:
 * a provisioned cluster with a secret or a database user, or a Serverless workgroup with a
 * secret or the caller's IAM identity. Turns it into the ARNs IAM names.
 */
import { ArnFormat, Stack } from 'aws-cdk-lib';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IConstruct } from 'constructs';
import type { LambdaEnvironmentVariable } from '../lambdas/handlers/environment-variables';

export type RedshiftTarget =
  | {
      /** A provisioned cluster, signing in with a Secrets Manager secret. */
      readonly clusterIdentifier: string;
      readonly database: string;
      readonly secret: ISecret;
    }
  | {
      /** A provisioned cluster, signing in as a database user (redshift:GetClusterCredentials). */
      readonly clusterIdentifier: string;
      readonly database: string;
      readonly dbUser: string;
    }
  | {
      /** Redshift Serverless; with a secret, or else with the caller's IAM identity (redshift-serverless:GetCredentials). */
      readonly workgroupName: string;
      /**
       * The workgroup's id (a UUID). IAM names workgroups by id: with it the grants name this
       * workgroup; without it they cover every workgroup of the account in the region.
       * @default every workgroup of the account in the region (acknowledged for cdk-nag)
       */
      readonly workgroupId?: string;
      readonly database: string;
      /** @default none: the function's IAM identity signs in (redshift-serverless:GetCredentials) */
      readonly secret?: ISecret;
    };

export function isServerless(
  redshift: RedshiftTarget,
): redshift is Extract<RedshiftTarget, { workgroupName: string }> {
  return 'workgroupName' in redshift;
}

/** `workgroup wg-1` or `cluster analytics`, for descriptions. */
export function describeRedshift(redshift: RedshiftTarget): string {
  return isServerless(redshift)
    ? `workgroup ${redshift.workgroupName}`
    : `cluster ${redshift.clusterIdentifier}`;
}

export function secretOf(redshift: RedshiftTarget): ISecret | undefined {
  return 'secret' in redshift ? redshift.secret : undefined;
}

/** The variables the handlers read to reach Redshift (lambdas/handlers/environment.ts). */
export function redshiftEnvironment(
  redshift: RedshiftTarget,
): Partial<Record<LambdaEnvironmentVariable, string>> {
  const secret = secretOf(redshift);
  return {
    ...(isServerless(redshift)
      ? { REDSHIFT_WORKGROUP_NAME: redshift.workgroupName }
      : { REDSHIFT_CLUSTER_IDENTIFIER: redshift.clusterIdentifier }),
    REDSHIFT_DATABASE: redshift.database,
    ...(secret ? { REDSHIFT_SECRET_ARN: secret.secretArn } : {}),
    ...('dbUser' in redshift ? { REDSHIFT_DB_USER: redshift.dbUser } : {}),
  };
}

/**
 * The resource a policy names for GetSecretValue: the complete ARN, or for a secret known by
 * name or partial ARN, that ARN with the six random characters Secrets Manager appends (as
 * the secret's own grantRead does).
 */
export function secretPolicyArn(secret: ISecret): string {
  return secret.secretFullArn ?? `${secret.secretArn}-??????`;
}

/** What the submitting functions need on Redshift: where statements go and how they sign in. */
export interface RedshiftGrants {
  readonly target: string;
  readonly credentials: { readonly actions: string[]; readonly resources: string[] };
  /** Set when `target` covers more than the one workgroup. */
  readonly wildcardReason?: string;
}

function secretCredentials(secret: ISecret): RedshiftGrants['credentials'] {
  return { actions: ['secretsmanager:GetSecretValue'], resources: [secretPolicyArn(secret)] };
}

/**
 * What a call on an open Data API session (SessionId only: no cluster, workgroup, database or
 * credentials; how the unload's later calls and fail-run's ROLLBACK run) is authorized on. The
 * documentation does not say in words. The Service Authorization Reference lists cluster and
 * workgroup as OPTIONAL resource types of ExecuteStatement and BatchExecuteStatement, unlike the
 * required ones of DescribeTable and ListDatabases, with the condition key
 * redshift-data:session-owner-iam-userid
 * (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftdataapi.html);
 * the guide's policy for calls on sessions grants them on Resource "*" with that key
 * (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-iam.html). A request that names no
 * resource of an optional type is matched only by a statement on "*", so the grant on the
 * target alone may not allow it. This grant covers that reading, kept to sessions this role
 * opened: the key holds the owner's `aws:userid`, `<role id>:<role session name>` (a Lambda's
 * session name differs per function, hence the `*`). Under the other reading (authorized on
 * the session's cluster or workgroup) the grant on the target allows the call. Whether the
 * credentials are checked again on a session already signed in is not documented either; the
 * role that uses a session is the one that opened it, so it holds them anyway.
 */
export function sessionCallGrant(roleId: string): {
  readonly actions: string[];
  readonly resources: string[];
  readonly conditions: Record<string, Record<string, string>>;
} {
  return {
    actions: ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
    resources: ['*'],
    conditions: { StringLike: { 'redshift-data:session-owner-iam-userid': `${roleId}:*` } },
  };
}

export function redshiftGrants(scope: IConstruct, redshift: RedshiftTarget): RedshiftGrants {
  const stack = Stack.of(scope);
  if (isServerless(redshift)) {
    // IAM names a workgroup by its id, not its name; without the id, every workgroup of
    // the account in this region.
    const target = stack.formatArn({
      service: 'redshift-serverless',
      resource: 'workgroup',
      resourceName: redshift.workgroupId ?? '*',
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
    return {
      target,
      credentials: redshift.secret
        ? secretCredentials(redshift.secret)
        : { actions: ['redshift-serverless:GetCredentials'], resources: [target] },
      ...(redshift.workgroupId
        ? {}
        : {
            wildcardReason:
              'IAM names a Redshift Serverless workgroup by its id; set the workgroup id (aws.redshift.workgroupId) to narrow the grant to one workgroup.',
          }),
    };
  }
  const cluster = (resource: string, resourceName: string) =>
    stack.formatArn({
      service: 'redshift',
      resource,
      resourceName,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });
  const target = cluster('cluster', redshift.clusterIdentifier);
  if ('secret' in redshift) return { target, credentials: secretCredentials(redshift.secret) };
  return {
    target,
    credentials: {
      actions: ['redshift:GetClusterCredentials'],
      resources: [
        cluster('dbuser', `${redshift.clusterIdentifier}/${redshift.dbUser}`),
        cluster('dbname', `${redshift.clusterIdentifier}/${redshift.database}`),
      ],
    },
  };
}
