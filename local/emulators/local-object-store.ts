/**
 * A folder standing in for S3: object `s3://bucket/key` is the file `<s3Dir>/bucket/key`.
 * The UNLOAD emulator writes into it, the aws_s3 shim reads from it (the PostgreSQL server
 * reads the files itself, so folders are created world-readable), and the pipeline reads and
 * writes its run files through the ObjectStore port. For a server that cannot read the folder
 * (in a container, on another host), every write is also made to `copy`: the target
 * database's copy of the bucket, which the shim reads instead (see aws-s3-shim.ts).
 */
import type { Dirent } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { ConfigError, SyncError } from '../../lambdas/core/errors';
import type { ObjectStore } from '../../lambdas/core/transfer/ports';
import type { UnloadBucket } from './unload-files';

/** The object does not exist (S3's NoSuchKey). */
export class ObjectNotFoundError extends SyncError {}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function checkBucket(bucket: string): string {
  if (!BUCKET.test(bucket)) {
    throw new ConfigError(
      `bucket ${JSON.stringify(bucket)} is not an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens).`,
    );
  }
  return bucket;
}

/**
 * Refuses keys a folder cannot hold as S3 does: empty, starting with `/`, with empty, `.` or
 * `..` segments (which would also step outside the bucket's folder), or ending with `/`.
 */
function checkKey(key: string, what: string): string {
  const segments = key.split('/');
  if (
    key === '' ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw new ConfigError(
      `${what} ${JSON.stringify(key)} cannot be stored in the local bucket folder: keys must not start or end with /, or hold empty, "." or ".." segments.`,
    );
  }
  return key;
}

function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT';
}

/** A second place the object store's writes go to, in the same order. */
export interface ObjectCopy {
  createObject(bucket: string, key: string): Promise<void>;
  appendToObject(bucket: string, key: string, bytes: Buffer): Promise<void>;
  deletePrefix(bucket: string, prefix: string): Promise<void>;
}

export class LocalObjectStore implements ObjectStore, UnloadBucket {
  constructor(
    readonly s3Dir: string,
    private readonly copy?: ObjectCopy,
  ) {}

  /** The file holding `s3://bucket/key`. */
  pathOf(bucket: string, key: string): string {
    return join(this.s3Dir, checkBucket(bucket), checkKey(key, 'object key'));
  }

  async getText(bucket: string, key: string): Promise<string> {
    try {
      return await readFile(this.pathOf(bucket, key), 'utf8');
    } catch (error) {
      if (isNotFound(error)) {
        throw new ObjectNotFoundError(
          `s3://${bucket}/${key} does not exist in the local bucket folder ${this.s3Dir}.`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  async putText(bucket: string, key: string, text: string): Promise<void> {
    await this.createObject(bucket, key);
    await this.appendToObject(bucket, key, Buffer.from(text, 'utf8'));
  }

  async createObject(bucket: string, key: string): Promise<void> {
    const path = this.pathOf(bucket, key);
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await writeFile(path, '', { mode: 0o644 });
    await this.copy?.createObject(bucket, key);
  }

  async appendToObject(bucket: string, key: string, bytes: Buffer): Promise<void> {
    await appendFile(this.pathOf(bucket, key), bytes);
    await this.copy?.appendToObject(bucket, key, bytes);
  }

  /** Every key under `prefix` (any string: keys are matched by their start, as S3 lists them), sorted. */
  async listKeys(bucket: string, prefix: string): Promise<string[]> {
    const bucketDir = join(this.s3Dir, checkBucket(bucket));
    // Only the folder holding the prefix's last complete segment can contain matches.
    const folder = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    if (folder !== '') checkKey(folder, 'key prefix');
    let entries: Dirent[];
    try {
      entries = await readdir(join(bucketDir, folder), { recursive: true, withFileTypes: true });
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const keys = entries
      .filter((entry) => entry.isFile())
      .map((entry) => relative(bucketDir, join(entry.parentPath, entry.name)).split(sep).join('/'))
      .filter((key) => key.startsWith(prefix));
    return keys.sort();
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    const keys = await this.listKeys(bucket, prefix);
    await Promise.all(keys.map((key) => rm(this.pathOf(bucket, key))));
    await this.copy?.deletePrefix(bucket, prefix);
    return keys.length;
  }
}
