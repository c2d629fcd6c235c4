/**
 * Where a run keeps its files: the run bucket (created, or an existing one), the KMS key run
 * files and the alarm topic are encrypted with, and the bucket the run bucket's access logs
 * go to. Run files live under `runs/`; every grant of the pipeline is scoped to that prefix.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import { type IKey, Key } from 'aws-cdk-lib/aws-kms';
import { BlockPublicAccess, Bucket, BucketEncryption, type IBucket } from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CONFIG_DEFAULTS, CONFIG_LIMITS } from '../lambdas/core/config';
import { RUNS_PREFIX } from '../lambdas/pipeline/run-files';
import { refuseProp } from './nag';

export interface RunStorageProps {
  /**
   * The key run files are encrypted with (UNLOAD and every writer name it explicitly). Its
   * key policy must let the account's IAM policies grant it, as a key made by CDK does.
   * @default the existing `bucket`'s key if it has one, else a new key with yearly rotation
   */
  readonly encryptionKey?: IKey;
  /**
   * An existing bucket for the run files, e.g. `Bucket.fromBucketAttributes(...)` with its
   * `encryptionKey`. Nothing is changed on it: its lifecycle rules, access logging and
   * public-access settings are its owner's, and an imported UNLOAD role needs a role whose
   * policy this stack can extend (see PipelineFunctions' `unloadRole`).
   * @default a new SSE-KMS, SSL-only, private bucket with server access logging
   */
  readonly bucket?: IBucket;
  /**
   * How long files under `runs/` are kept in a new bucket. Runs delete their own files; this
   * catches what an interrupted run left. Whole days, 1 to 3650; not with `bucket`.
   * @default 7 days
   */
  readonly runFilesExpiration?: Duration;
  /**
   * Where a new run bucket's server access logs go (prefix `run-bucket/`). S3 delivers access
   * logs only to buckets encrypted with S3-managed keys. Not with `bucket`.
   * @default a new S3-managed, SSL-only, private bucket keeping logs for 365 days
   */
  readonly accessLogsBucket?: IBucket;
  /**
   * The description of a new key.
   * @default `redshift-aurora-sync: run files and alarm topic`
   */
  readonly keyDescription?: string;
}

export class RunStorage extends Construct {
  /** The key run files are written with. */
  readonly key: IKey;
  readonly bucket: IBucket;
  /** The access logs bucket of a new run bucket; undefined with an existing `bucket`. */
  readonly accessLogsBucket?: IBucket;
  /** The ARN pattern of every run file: `<bucket ARN>/runs/*`. */
  readonly runFilesArn: string;

  constructor(scope: Construct, id: string, props: RunStorageProps = {}) {
    super(scope, id);
    validate(this, props);
    this.key =
      props.encryptionKey ??
      props.bucket?.encryptionKey ??
      new Key(this, 'Key', {
        description: props.keyDescription ?? 'redshift-aurora-sync: run files and alarm topic',
        enableKeyRotation: true,
      });
    if (props.bucket) {
      this.bucket = props.bucket;
    } else {
      this.accessLogsBucket = props.accessLogsBucket ?? this.createAccessLogsBucket();
      this.bucket = new Bucket(this, 'RunBucket', {
        encryption: BucketEncryption.KMS,
        encryptionKey: this.key,
        bucketKeyEnabled: true,
        enforceSSL: true,
        blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
        versioned: false,
        serverAccessLogsBucket: this.accessLogsBucket,
        serverAccessLogsPrefix: 'run-bucket/',
        lifecycleRules: [
          // Runs delete their own files; this catches what an interrupted run left.
          {
            prefix: RUNS_PREFIX,
            expiration:
              props.runFilesExpiration ?? Duration.days(CONFIG_DEFAULTS.retention.runFilesDays),
          },
          { abortIncompleteMultipartUploadAfter: Duration.days(1) },
        ],
      });
    }
    this.runFilesArn = this.bucket.arnForObjects(`${RUNS_PREFIX}*`);
  }

  private createAccessLogsBucket(): Bucket {
    const accessLogs = new Bucket(this, 'AccessLogs', {
      // S3 delivers server access logs only to buckets encrypted with S3-managed keys.
      encryption: BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      lifecycleRules: [{ expiration: Duration.days(365) }],
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        "This bucket receives the run bucket's server access logs; logging it to itself would log its own log deliveries.",
    });
    return accessLogs;
  }
}

function validate(scope: Construct, props: RunStorageProps): void {
  if (props.bucket && props.runFilesExpiration) {
    refuseProp(
      scope,
      'runFilesExpiration',
      "applies to a new bucket only; with an existing `bucket`, expire runs/ in that bucket's own lifecycle rules.",
    );
  }
  if (props.bucket && props.accessLogsBucket) {
    refuseProp(
      scope,
      'accessLogsBucket',
      "applies to a new bucket only; an existing `bucket`'s access logging is its owner's.",
    );
  }
  const expiration = props.runFilesExpiration;
  if (expiration && !expiration.isUnresolved()) {
    const days = expiration.toDays({ integral: false });
    const { min, max } = CONFIG_LIMITS.runFilesDays;
    if (!Number.isInteger(days) || days < min || days > max) {
      refuseProp(
        scope,
        'runFilesExpiration',
        `is ${expiration.toHumanString()}; S3 expires objects after whole days: give ${min} to ${max} days.`,
      );
    }
  }
}
