import { describe, expect, it } from 'vitest';
import { ManifestError } from '../lambdas/core/unload/errors';
import { parseManifest } from '../lambdas/core/unload/manifest';

const WHERE = 's3://sync-bucket/runs/r/orders__abc/manifest';

function entry(key: string, bytes: number, records: number) {
  return {
    url: `s3://sync-bucket/runs/r/orders__abc/${key}`,
    meta: { content_length: bytes, record_count: records },
  };
}

/** As MANIFEST VERBOSE writes it (schema and author are not relied on). */
function manifest(entries: unknown[], totals?: { bytes: number; records: number }) {
  return JSON.stringify({
    entries,
    schema: { elements: [{ name: 'id', type: { base: 'integer' } }] },
    ...(totals ? { meta: { content_length: totals.bytes, record_count: totals.records } } : {}),
    author: { name: 'Amazon Redshift', version: '1.0.0' },
  });
}

describe('parseManifest', () => {
  it('lists the data files with sizes and record counts, skipping empty slices', () => {
    const text = manifest(
      [entry('0000_part_00', 1200, 40), entry('0001_part_00', 0, 0), entry('0001_part_01', 30, 2)],
      { bytes: 1230, records: 42 },
    );
    expect(parseManifest(text, WHERE)).toEqual([
      { bucket: 'sync-bucket', key: 'runs/r/orders__abc/0000_part_00', bytes: 1200, records: 40 },
      { bucket: 'sync-bucket', key: 'runs/r/orders__abc/0001_part_01', bytes: 30, records: 2 },
    ]);
  });

  it('gives no files for an empty table', () => {
    const text = manifest([entry('0000_part_00', 0, 0), entry('0001_part_00', 0, 0)], {
      bytes: 0,
      records: 0,
    });
    expect(parseManifest(text, WHERE)).toEqual([]);
    expect(parseManifest(manifest([]), WHERE)).toEqual([]);
  });

  it.each([
    ['not JSON', '{"entries": [', /manifest s3:\/\/sync-bucket\/.* is not JSON/],
    [
      'not an object',
      'null',
      /manifest \S+ is null, not a JSON object; this is not a manifest UNLOAD wrote/,
    ],
    [
      'no entries',
      JSON.stringify({ files: [] }),
      /: entries is missing, not a list of files; this is not a manifest UNLOAD wrote/,
    ],
    [
      'entries not a list',
      JSON.stringify({ entries: {} }),
      /: entries is \{\}, not a list of files/,
    ],
    [
      'an entry that is not an object',
      manifest([entry('a', 1, 1), 'b']),
      /: entries\[1\] is "b", not an object with url and meta/,
    ],
    [
      'an entry without url',
      manifest([{ meta: {} }]),
      /: entries\[0\]\.url is missing, not an s3:\/\/ URL/,
    ],
    [
      'an url that is not s3',
      manifest([{ url: 'https://x/y', meta: { content_length: 1, record_count: 1 } }]),
      /: entries\[0\]\.url is "https:\/\/x\/y", not an s3:\/\/ URL/,
    ],
    [
      'an url without a key',
      manifest([{ url: 's3://b/', meta: { content_length: 1, record_count: 1 } }]),
      /: entries\[0\]\.url is "s3:\/\/b\/", not an s3:\/\/ URL/,
    ],
    [
      'a plain (not VERBOSE) manifest',
      JSON.stringify({ entries: [{ url: 's3://b/k', mandatory: true }] }),
      /: entries\[0\]\.meta is missing, not an object with content_length and record_count; was the UNLOAD run without MANIFEST VERBOSE\?/,
    ],
    [
      'a negative size',
      manifest([entry('a', 10, 1), entry('b', -1, 0)]),
      /: entries\[1\]\.meta\.content_length is -1, not a whole number of bytes/,
    ],
    [
      'a fractional size',
      manifest([entry('a', 1.5, 1)]),
      /: entries\[0\]\.meta\.content_length is 1\.5, not a whole number of bytes/,
    ],
    [
      'a record count as text',
      manifest([{ url: 's3://b/k', meta: { content_length: 5, record_count: '1' } }]),
      /: entries\[0\]\.meta\.record_count is "1", not a whole number of records/,
    ],
    [
      'a total record count as text',
      manifest([entry('a', 10, 1)], { bytes: 10, records: '1' as unknown as number }),
      /: meta\.record_count is "1", not a whole number of records/,
    ],
    [
      'records in an empty file',
      manifest([entry('a', 0, 3)]),
      /lists s3:\/\/sync-bucket\/runs\/r\/orders__abc\/a with 3 records in 0 bytes/,
    ],
    [
      'a total that does not add up',
      manifest([entry('a', 10, 1), entry('b', 10, 1)], { bytes: 20, records: 3 }),
      /says 3 records in all, but its entries add up to 2/,
    ],
  ])('refuses %s, naming the manifest', (_case, text, message) => {
    expect(() => parseManifest(text, WHERE)).toThrowError(ManifestError);
    expect(() => parseManifest(text, WHERE)).toThrowError(message);
    expect(() => parseManifest(text, WHERE)).toThrowError(new RegExp(`^manifest ${WHERE}[ :]`));
  });
});
