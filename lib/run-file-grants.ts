/**
 * What the database-side roles may do with run files: Redshift's UNLOAD role writes them,
 * Aurora's s3Import role reads them. Scoped to `runs/` of the run bucket and to its key.
 */
import type { IRole } from 'aws-cdk-lib/aws-iam';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledgeWildcardResources, refuseProp } from './nag';

/** The run bucket, its key and the ARN pattern of the run files: what RunStorage provides. */
export interface RunFiles {
  readonly bucket: IBucket;
  readonly key: IKey;
  /** `<bucket ARN>/runs/*`. */
  readonly runFilesArn: string;
}

/**
 * UNLOAD's access (https://docs.aws.amazon.com/redshift/latest/mgmt/copy-unload-iam-role.html):
 * in the role's own policy when this stack may extend it; for a role imported with
 * `mutable: false, addGrantsToResources: true`, in the bucket policy and the key policy
 * instead. Within one account an allow in the bucket policy suffices for S3, and a key policy
 * statement naming the role suffices for KMS; a role in another account also needs the same
 * in its own identity policy
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html,
 * https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html).
 */
export function grantUnloadWrite(scope: Construct, storage: RunFiles, role: IRole): void {
  const { bucket, key, runFilesArn } = storage;
  const statements = (resource: 'identity' | 'resource') => {
    const principals = resource === 'resource' ? [role.grantPrincipal] : [];
    return [
      new PolicyStatement({ principals, actions: ['s3:PutObject'], resources: [runFilesArn] }),
      new PolicyStatement({
        principals,
        actions: ['s3:GetBucketLocation', 's3:ListBucket'],
        resources: [bucket.bucketArn],
      }),
      new PolicyStatement({
        principals,
        // Decrypt too: files over the part size are written in parts, and completing an
        // SSE-KMS multipart upload decrypts the data key. In a key policy, "*" is the key.
        actions: ['kms:GenerateDataKey', 'kms:Encrypt', 'kms:Decrypt'],
        resources: [resource === 'resource' ? '*' : key.keyArn],
      }),
    ] as const;
  };
  const [put, ...rest] = statements('identity');
  if (role.addToPrincipalPolicy(put).statementAdded) {
    for (const statement of rest) role.addToPrincipalPolicy(statement);
    acknowledgeWildcardResources(role, [
      {
        resource: runFilesArn,
        reason:
          'UNLOAD writes files whose names Redshift chooses under a per-run prefix, so the grant covers the objects under runs/ of this bucket only.',
      },
    ]);
    return;
  }
  const [resourcePut, resourceList, resourceKey] = statements('resource');
  const added = [
    bucket.addToResourcePolicy(resourcePut),
    bucket.addToResourcePolicy(resourceList),
    key.addToResourcePolicy(resourceKey),
  ].every((result) => result.statementAdded);
  if (!added) {
    refuseProp(
      scope,
      'unloadRole',
      `(${role.roleArn}) takes no policy from this stack, and the run bucket or its key is not one this stack created, so nothing here can let UNLOAD write run files. Grant the role s3:PutObject on runs/*, s3:GetBucketLocation and s3:ListBucket on the bucket and kms:GenerateDataKey, kms:Encrypt and kms:Decrypt on the key yourself, or import it with mutable: true.`,
    );
  }
}

/** What aws_s3.table_import_from_s3 needs to read run files as Aurora's s3Import role. */
export function grantImportRead(storage: RunFiles, role: IRole): void {
  const { bucket, key, runFilesArn } = storage;
  role.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['s3:GetObject'], resources: [runFilesArn] }),
  );
  role.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucket.bucketArn] }),
  );
  role.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['kms:Decrypt'], resources: [key.keyArn] }),
  );
  acknowledgeWildcardResources(role, [
    {
      resource: runFilesArn,
      reason:
        'aws_s3.table_import_from_s3 reads files whose names Redshift chose, so the grant covers the objects under runs/ of this bucket only.',
    },
  ]);
}
