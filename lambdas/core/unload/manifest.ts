/**
 * The manifest UNLOAD writes with MANIFEST VERBOSE: which files it wrote, their sizes and
 * record counts, each entry `{"url": "s3://...", "meta": {"content_length": N, "record_count":
 * N}}` (https://docs.aws.amazon.com/redshift/latest/dg/r_UNLOAD.html, MANIFEST [ VERBOSE ]; an
 * UNLOAD manifest shown at https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html).
 * Only `entries` and the top-level `meta` are relied on; `schema` and `author` are Redshift's
 * business, so unknown keys are let through.
 */
// A namespace import: see lambdas/core/config-fields.ts.
import * as z from 'zod';
import { describe, pathText } from '../config-fields';
import type { DataFile } from '../transfer/types';
import { ManifestError } from './errors';

const S3_URL = /^s3:\/\/([^/]+)\/(.+)$/;
const NOT_UNLOADS = 'this is not a manifest UNLOAD wrote.';
const NOT_VERBOSE = 'was the UNLOAD run without MANIFEST VERBOSE?';

/** The message of a value that is not `what`, quoting it, and `hint` what to make of it. */
const not = (what: string, hint: string) => ({
  error: (issue: { input?: unknown }) => `is ${describe(issue.input)}, not ${what}; ${hint}`,
});

const wholeNumberOf = (unit: 'bytes' | 'records') => {
  const message = not(`a whole number of ${unit}`, NOT_VERBOSE);
  return z.int(message).min(0, message);
};

const entry = z.object(
  {
    url: z.string(not('an s3:// URL', NOT_UNLOADS)).regex(S3_URL, not('an s3:// URL', NOT_UNLOADS)),
    meta: z.object(
      { content_length: wholeNumberOf('bytes'), record_count: wholeNumberOf('records') },
      not('an object with content_length and record_count', NOT_VERBOSE),
    ),
  },
  not('an object with url and meta', NOT_UNLOADS),
);

const manifestSchema = z.object(
  {
    entries: z.array(entry, not('a list of files', NOT_UNLOADS)),
    meta: z
      .object({ record_count: wholeNumberOf('records').optional() }, not('an object', NOT_UNLOADS))
      .optional(),
  },
  not('a JSON object', NOT_UNLOADS),
);

/**
 * The data files a manifest lists, in its order, without the empty ones: UNLOAD writes a
 * 0-byte file for a slice with no rows, and aws_s3 fails on 0-byte objects. `where` names the
 * manifest in errors (its S3 URL).
 */
export function parseManifest(text: string, where: string): DataFile[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ManifestError(`manifest ${where} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const result = manifestSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = pathText(issue.path);
    throw new ManifestError(`manifest ${where}${field ? `: ${field}` : ''} ${issue.message}`, {
      cause: result.error,
    });
  }
  const manifest = result.data;
  const files = manifest.entries.map(({ url, meta }): DataFile => {
    const [, bucket, key] = S3_URL.exec(url)!;
    return { bucket: bucket!, key: key!, bytes: meta.content_length, records: meta.record_count };
  });
  const inconsistent = files.find((file) => file.bytes === 0 && file.records > 0);
  if (inconsistent) {
    throw new ManifestError(
      `manifest ${where} lists s3://${inconsistent.bucket}/${inconsistent.key} with ${inconsistent.records} records in 0 bytes; the manifest is damaged.`,
    );
  }
  const total = manifest.meta?.record_count;
  const listed = files.reduce((sum, file) => sum + file.records, 0);
  if (total !== undefined && total !== listed) {
    throw new ManifestError(
      `manifest ${where} says ${total} records in all, but its entries add up to ${listed}; the manifest is damaged or incomplete.`,
    );
  }
  return files.filter((file) => file.bytes > 0);
}
