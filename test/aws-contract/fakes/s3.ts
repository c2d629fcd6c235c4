/**
 * Amazon S3 over a folder, laid out as the local object store (`s3://bucket/key` is
 * `<s3Dir>/bucket/key`, local/emulators/local-object-store.ts), so the UNLOAD emulator and the
 * aws_s3 shim share it. Every request is authorized first, as IAM evaluates it for S3
 * (https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html):
 * objects as `arn:aws:s3:::bucket/key`, listing as s3:ListBucket on the bucket with `s3:prefix`.
 * In a bucket whose default encryption is SSE-KMS, S3 also uses the key as the caller: writing
 * an object needs kms:GenerateDataKey on it, reading one kms:Decrypt ("Permissions required",
 * https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html), with
 * kms:ViaService `s3.<region>.amazonaws.com`
 * (https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service).
 */
import { readFile, rm, stat } from 'node:fs/promises';
import {
  AccessDenied,
  type DeleteObjectsCommandInput,
  type DeleteObjectsCommandOutput,
  type GetObjectCommandInput,
  type GetObjectCommandOutput,
  type HeadObjectCommandInput,
  type HeadObjectCommandOutput,
  type ListObjectsV2CommandInput,
  type ListObjectsV2CommandOutput,
  NoSuchBucket,
  NoSuchKey,
  NotFound,
  type PutObjectCommandInput,
  type PutObjectCommandOutput,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { LocalObjectStore } from '../../../local/emulators/local-object-store';
import type { UnloadBucket } from '../../../local/emulators/unload-files';
import type { Authorize, AwsPrincipal, AwsRequest } from '../access';
import { AWS_LIMITS } from '../limits';
import { authorizeOrThrow, namedSdkError, sdkError } from './sdk-errors';

const METADATA = { $metadata: { httpStatusCode: 200 } };

export interface S3FakeOptions {
  /** The folder holding the buckets. */
  readonly s3Dir: string;
  /** The buckets that exist; a request to another is NoSuchBucket. */
  readonly buckets: readonly string[];
  readonly authorize: Authorize;
  /** The KMS key ARN of each bucket encrypted by default with SSE-KMS, by bucket name. */
  readonly bucketKeys?: Readonly<Record<string, string>>;
  /** The buckets' region, for kms:ViaService. Default us-east-1. */
  readonly region?: string;
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/** What GetObject's Body offers (the SDK's sdkStreamMixin), over bytes already read. */
function body(bytes: Buffer) {
  return {
    transformToString: async (encoding: BufferEncoding = 'utf8') => bytes.toString(encoding),
    transformToByteArray: async () => new Uint8Array(bytes),
    transformToWebStream: () => new Blob([bytes]).stream(),
  };
}

async function bodyBytes(value: PutObjectCommandInput['Body']): Promise<Buffer> {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Buffer.from(value);
  throw new Error('the S3 fake takes PutObject bodies as strings or bytes');
}

export class S3Fake {
  readonly store: LocalObjectStore;
  /**
   * Requests authorized so far by IAM action (s3:GetObject for GET and HEAD, s3:PutObject,
   * s3:ListBucket for a listing, and the kms: calls S3 makes for SSE-KMS), whoever made them:
   * the functions, UNLOAD (one PutObject per file) and Aurora's import (one GetObject per file).
   * DeleteObjects is not counted (S3 does not charge for DELETE).
   */
  readonly requests = new Map<string, number>();

  constructor(private readonly options: S3FakeOptions) {
    this.store = new LocalObjectStore(options.s3Dir);
  }

  async getObject(
    principal: AwsPrincipal,
    input: GetObjectCommandInput,
  ): Promise<GetObjectCommandOutput> {
    const { bucket, key } = this.objectOf(input);
    this.authorize(principal, { action: 's3:GetObject', resource: objectArn(bucket, key) });
    const bytes = await this.read(bucket, key, principal);
    this.authorizeKey(principal, 'kms:Decrypt', bucket);
    return {
      ...METADATA,
      Body: body(bytes) as never,
      ContentLength: bytes.length,
    } as GetObjectCommandOutput;
  }

  async headObject(
    principal: AwsPrincipal,
    input: HeadObjectCommandInput,
  ): Promise<HeadObjectCommandOutput> {
    const { bucket, key } = this.objectOf(input);
    // HEAD needs s3:GetObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html).
    this.authorize(principal, { action: 's3:GetObject', resource: objectArn(bucket, key) });
    try {
      const info = await stat(this.store.pathOf(bucket, key));
      return { ...METADATA, ContentLength: info.size, LastModified: info.mtime };
    } catch (error) {
      if (!isNotFound(error)) throw error;
      // HEAD has no body, so the SDK reports a missing object as NotFound (404).
      throw sdkError(NotFound, 'Not Found', 404);
    }
  }

  async putObject(
    principal: AwsPrincipal,
    input: PutObjectCommandInput,
  ): Promise<PutObjectCommandOutput> {
    const { bucket, key } = this.objectOf(input);
    this.authorize(principal, { action: 's3:PutObject', resource: objectArn(bucket, key) });
    this.authorizeKey(principal, 'kms:GenerateDataKey', bucket, input.SSEKMSKeyId);
    await this.store.createObject(bucket, key);
    await this.store.appendToObject(bucket, key, await bodyBytes(input.Body));
    return { ...METADATA };
  }

  async listObjectsV2(
    principal: AwsPrincipal,
    input: ListObjectsV2CommandInput,
  ): Promise<ListObjectsV2CommandOutput> {
    const bucket = this.bucketOf(input.Bucket);
    const prefix = input.Prefix ?? '';
    this.authorize(principal, {
      action: 's3:ListBucket',
      resource: bucketArn(bucket),
      context: { 's3:prefix': prefix },
    });
    const maxKeys = Math.min(input.MaxKeys ?? AWS_LIMITS.s3.maxListKeys, AWS_LIMITS.s3.maxListKeys);
    const after = input.ContinuationToken
      ? Buffer.from(input.ContinuationToken, 'base64url').toString('utf8')
      : (input.StartAfter ?? '');
    // S3 lists keys in UTF-8 binary order; the keys here are ASCII, where that is JS order.
    const keys = (await this.store.listKeys(bucket, prefix)).filter((key) => key > after);
    const page = keys.slice(0, maxKeys);
    const truncated = keys.length > page.length;
    const contents = await Promise.all(
      page.map(async (Key) => {
        const info = await stat(this.store.pathOf(bucket, Key));
        return { Key, Size: info.size, LastModified: info.mtime };
      }),
    );
    return {
      ...METADATA,
      Name: bucket,
      Prefix: prefix,
      KeyCount: page.length,
      MaxKeys: maxKeys,
      IsTruncated: truncated,
      ...(contents.length > 0 ? { Contents: contents } : {}),
      ...(input.ContinuationToken ? { ContinuationToken: input.ContinuationToken } : {}),
      ...(truncated
        ? { NextContinuationToken: Buffer.from(page.at(-1)!, 'utf8').toString('base64url') }
        : {}),
    };
  }

  async deleteObjects(
    principal: AwsPrincipal,
    input: DeleteObjectsCommandInput,
  ): Promise<DeleteObjectsCommandOutput> {
    const bucket = this.bucketOf(input.Bucket);
    const objects = input.Delete?.Objects ?? [];
    if (objects.length === 0 || objects.length > AWS_LIMITS.s3.maxDeleteKeys) {
      // S3 answers a request of more than 1,000 keys (or none) with MalformedXML.
      throw namedSdkError(
        S3ServiceException,
        'MalformedXML',
        `The XML you provided was not well-formed or did not validate against our published schema (DeleteObjects takes 1 to ${AWS_LIMITS.s3.maxDeleteKeys} keys, got ${objects.length})`,
      );
    }
    const deleted: { Key: string }[] = [];
    const errors: { Key: string; Code: string; Message: string }[] = [];
    for (const { Key } of objects) {
      const key = Key ?? '';
      // "you must have the s3:DeleteObject permission" for each key; a refused key is an
      // entry of Errors, the others are deleted (API_DeleteObjects.html).
      try {
        this.options.authorize(principal, {
          action: 's3:DeleteObject',
          resource: objectArn(bucket, key),
        });
      } catch (error) {
        errors.push({ Key: key, Code: 'AccessDenied', Message: (error as Error).message });
        continue;
      }
      // Deleting a key that does not exist succeeds, as in S3.
      await rm(this.store.pathOf(bucket, key), { force: true });
      deleted.push({ Key: key });
    }
    return {
      ...METADATA,
      ...(input.Delete?.Quiet ? {} : { Deleted: deleted }),
      ...(errors.length > 0 ? { Errors: errors } : {}),
    };
  }

  /**
   * The bucket as Redshift's UNLOAD writes it, on behalf of the role in its IAM_ROLE: it lists
   * the destination (refusing a non-empty one) and puts each file.
   * https://docs.aws.amazon.com/redshift/latest/dg/r_UNLOAD.html (IAM_ROLE: s3:ListBucket,
   * s3:PutObject, and s3:DeleteObject for CLEANPATH). Files are encrypted with `kmsKeyId` (its
   * KMS_KEY_ID) if given, else with the bucket's default key.
   */
  unloadBucketFor(principal: AwsPrincipal, kmsKeyId?: string): UnloadBucket {
    return {
      listKeys: async (bucket, prefix) => {
        this.bucketOf(bucket);
        this.authorize(principal, {
          action: 's3:ListBucket',
          resource: bucketArn(bucket),
          context: { 's3:prefix': prefix },
        });
        return this.store.listKeys(bucket, prefix);
      },
      createObject: async (bucket, key) => {
        this.bucketOf(bucket);
        this.authorize(principal, { action: 's3:PutObject', resource: objectArn(bucket, key) });
        this.authorizeKey(principal, 'kms:GenerateDataKey', bucket, kmsKeyId);
        await this.store.createObject(bucket, key);
      },
      // The rest of an object already authorized at createObject (one upload).
      appendToObject: (bucket, key, bytes) => this.store.appendToObject(bucket, key, bytes),
    };
  }

  /** Authorizes a read by another service's role (Aurora's s3Import role for aws_s3). */
  authorizeRead(principal: AwsPrincipal, bucket: string, key: string): void {
    this.bucketOf(bucket);
    this.authorize(principal, { action: 's3:GetObject', resource: objectArn(bucket, key) });
    this.authorizeKey(principal, 'kms:Decrypt', bucket);
  }

  /** The KMS call S3 makes as the caller for an object of an SSE-KMS bucket (or with `keyArn`). */
  private authorizeKey(
    principal: AwsPrincipal,
    action: 'kms:GenerateDataKey' | 'kms:Decrypt',
    bucket: string,
    keyArn = this.options.bucketKeys?.[bucket],
  ): void {
    if (keyArn === undefined) return;
    this.authorize(principal, {
      action,
      resource: keyArn,
      context: { 'kms:ViaService': `s3.${this.options.region ?? 'us-east-1'}.amazonaws.com` },
    });
  }

  private async read(bucket: string, key: string, principal: AwsPrincipal): Promise<Buffer> {
    try {
      return await readFile(this.store.pathOf(bucket, key));
    } catch (error) {
      if (!isNotFound(error)) throw error;
      // Without s3:ListBucket S3 answers a missing key with 403 instead of 404
      // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, Permissions).
      try {
        this.options.authorize(principal, {
          action: 's3:ListBucket',
          resource: bucketArn(bucket),
          context: { 's3:prefix': key },
        });
      } catch {
        throw sdkError(AccessDenied, 'Access Denied', 403);
      }
      throw sdkError(NoSuchKey, 'The specified key does not exist.', 404, { Key: key });
    }
  }

  private objectOf(input: { Bucket?: string; Key?: string }): { bucket: string; key: string } {
    return { bucket: this.bucketOf(input.Bucket), key: input.Key ?? '' };
  }

  private bucketOf(bucket: string | undefined): string {
    if (!bucket || !this.options.buckets.includes(bucket)) {
      throw sdkError(NoSuchBucket, 'The specified bucket does not exist', 404, {
        BucketName: bucket,
      });
    }
    return bucket;
  }

  private authorize(principal: AwsPrincipal, request: AwsRequest): void {
    this.requests.set(request.action, (this.requests.get(request.action) ?? 0) + 1);
    authorizeOrThrow(this.options.authorize, principal, request, (message) =>
      sdkError(AccessDenied, message, 403),
    );
  }
}

export function bucketArn(bucket: string): string {
  return `arn:aws:s3:::${bucket}`;
}

export function objectArn(bucket: string, key: string): string {
  return `arn:aws:s3:::${bucket}/${key}`;
}
