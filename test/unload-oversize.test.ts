import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { STATE } from '../lib/pipeline-definition';
import { installRedshiftShims } from '../local/emulators/redshift-shims';
import { AwsHarness } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

// Text of exactly 65535 bytes: a JSON string of 65533 characters and its quotes; hex of
// 32766 bytes and `\x`. One byte more is one too many.
const JSON_AT_LIMIT = `to_jsonb(repeat('a', 65533))`;
const JSON_OVER_LIMIT = `to_jsonb(repeat('a', 65534))`;
const BYTES_AT_LIMIT = `decode(repeat('ab', 32766), 'hex')`;
const BYTES_OVER_LIMIT = `decode(repeat('ab', 32767), 'hex')`;

let ground: DatabasesAndBucket;
let harness: AwsHarness;

beforeAll(async () => {
  ground = await databasesAndBucket('unload-oversize');
  await ground.source.query(`CREATE SCHEMA sales;
    CREATE TABLE sales.docs (id bigint, doc jsonb, blob bytea);
    INSERT INTO sales.docs VALUES
      (1, ${JSON_AT_LIMIT}, ${BYTES_AT_LIMIT}),
      (2, '{"small": [1, 2]}', '\\x00ff'),
      (3, NULL, NULL);`);
  harness = await AwsHarness.start({
    runtimeConfig: parseRuntimeConfig(
      {
        tables: [{ source: 'sales.docs', target: 'public.docs' }],
        locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30 },
      },
      'oversize test config',
    ),
    ...ground.runOn,
    waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 500 },
  });
});

afterAll(async () => {
  await harness?.close();
});

describe('the stand-in follows Redshift on long SUPER values', () => {
  it("JSON_SIZE counts the serialized text's bytes (the docs' example), JSON_SERIALIZE refuses past 65535", async () => {
    await installRedshiftShims(ground.source);
    const { rows } = await ground.source.query(
      `SELECT redshift_shims.json_size('[10001, 10002, "⬤"]'::jsonb) AS example,
              redshift_shims.json_size(${JSON_OVER_LIMIT}) AS over,
              redshift_shims.json_size(NULL::jsonb) AS missing,
              octet_length(redshift_shims.json_serialize(${JSON_AT_LIMIT})) AS at_limit`,
    );
    // https://docs.aws.amazon.com/redshift/latest/dg/r_json_size.html: 17 characters, 19 bytes.
    expect(rows[0]).toEqual({ example: 19, over: 65536, missing: null, at_limit: 65535 });
    await expect(
      ground.source.query(`SELECT redshift_shims.json_serialize(${JSON_OVER_LIMIT})`),
    ).rejects.toThrow(/more than VARCHAR holds \(65535\)/);
  });
});

describe('values too long for their text form', () => {
  it('pass at the limit, byte for byte', async () => {
    const run = await harness.run({});
    expect(run.outcome).toMatchObject({ status: 'SUCCEEDED' });
    const { rows } = await ground.target.query(
      `SELECT id::int, octet_length(doc::text) AS doc, octet_length(blob) AS blob
         FROM public.docs ORDER BY id`,
    );
    expect(rows).toEqual([
      { id: 1, doc: 65535, blob: 32766 },
      { id: 2, doc: 17, blob: 2 },
      { id: 3, doc: null, blob: null },
    ]);
  }, 120_000);

  it('past it, refuse the run before any UNLOAD, naming table, columns and rows', async () => {
    await ground.source.query(`UPDATE sales.docs SET doc = ${JSON_OVER_LIMIT} WHERE id = 1;
      UPDATE sales.docs SET blob = ${BYTES_OVER_LIMIT} WHERE id IN (1, 2);`);
    const unloads = vi.spyOn(harness.s3, 'unloadBucketFor');
    try {
      const run = await harness.run({});
      expect(run.outcome).toMatchObject({ status: 'FAILED' });
      expect(unloads).not.toHaveBeenCalled();
      const message = JSON.stringify(harness.sns.published.at(-1));
      expect(message).toContain('nothing was unloaded');
      expect(message).toContain('65535 bytes of text');
      expect(message).toContain('sales.docs: column doc in 1 row, column blob in 2 rows');
      expect(message).toContain('Sync a view that leaves the column out');
      // The live table keeps what the last good run published.
      const { rows } = await ground.target.query('SELECT count(*)::int AS n FROM public.docs');
      expect(rows[0].n).toBe(3);
    } finally {
      unloads.mockRestore();
      await ground.source.query(`UPDATE sales.docs SET doc = ${JSON_AT_LIMIT}, blob = ${BYTES_AT_LIMIT}
        WHERE id = 1; UPDATE sales.docs SET blob = '\\x00ff' WHERE id = 2;`);
    }
  }, 120_000);
});
