/**
 * The manifest UNLOAD writes with MANIFEST VERBOSE: which files it wrote, their sizes and
 * record counts. Only `entries` and the top-level `meta` are relied on; `schema` and `author`
 * are Redshift's business.
 */
import type { DataFile } from '../transfer/types';
import { ManifestError } from './errors';

const S3_URL = /^s3:\/\/([^/]+)\/(.+)$/;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function count(meta: Record<string, unknown>, key: string, where: string): number {
  const value = meta[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ManifestError(
      `${where}: meta.${key} is ${JSON.stringify(value)}, not a whole number of ${key === 'content_length' ? 'bytes' : 'records'}; this is not a MANIFEST VERBOSE manifest (was the UNLOAD run without VERBOSE?).`,
    );
  }
  return value;
}

/**
 * The data files a manifest lists, in its order, without the empty ones: UNLOAD writes a
 * 0-byte file for a slice with no rows, and aws_s3 fails on 0-byte objects. `where` names the
 * manifest in errors (its S3 URL).
 */
export function parseManifest(text: string, where: string): DataFile[] {
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (error) {
    throw new ManifestError(`manifest ${where} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!isObject(manifest) || !Array.isArray(manifest.entries)) {
    throw new ManifestError(
      `manifest ${where} has no "entries" list; it is not a manifest UNLOAD wrote.`,
    );
  }
  const files = manifest.entries.map((entry: unknown, index): DataFile => {
    const at = `manifest ${where}, entry ${index + 1}`;
    if (!isObject(entry) || typeof entry.url !== 'string') {
      throw new ManifestError(`${at} has no "url"; it is not a manifest UNLOAD wrote.`);
    }
    const url = S3_URL.exec(entry.url);
    if (!url) {
      throw new ManifestError(`${at}: url ${JSON.stringify(entry.url)} is not an s3:// URL.`);
    }
    if (!isObject(entry.meta)) {
      throw new ManifestError(
        `${at} has no "meta" with content_length and record_count; was the UNLOAD run without MANIFEST VERBOSE?`,
      );
    }
    return {
      bucket: url[1]!,
      key: url[2]!,
      bytes: count(entry.meta, 'content_length', at),
      records: count(entry.meta, 'record_count', at),
    };
  });
  const inconsistent = files.find((file) => file.bytes === 0 && file.records > 0);
  if (inconsistent) {
    throw new ManifestError(
      `manifest ${where} lists s3://${inconsistent.bucket}/${inconsistent.key} with ${inconsistent.records} records in 0 bytes; the manifest is damaged.`,
    );
  }
  if (isObject(manifest.meta) && manifest.meta.record_count !== undefined) {
    const total = count(manifest.meta, 'record_count', `manifest ${where}`);
    const listed = files.reduce((sum, file) => sum + file.records, 0);
    if (total !== listed) {
      throw new ManifestError(
        `manifest ${where} says ${total} records in all, but its entries add up to ${listed}; the manifest is damaged or incomplete.`,
      );
    }
  }
  return files.filter((file) => file.bytes > 0);
}
