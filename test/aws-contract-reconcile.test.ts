import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { STATE } from '../lib/pipeline-definition';
import { AwsHarness } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

let ground: DatabasesAndBucket;
let harness: AwsHarness;

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-reconcile');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint PRIMARY KEY, amount numeric(12,2), seq bigint);
    INSERT INTO sales.orders SELECT g, g * 1.5, g FROM generate_series(1, 40) g;
  `);
  await ground.target.query(`
    CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), seq bigint);
    ALTER TABLE public.orders OWNER TO ${ground.owner};
  `);
  harness = await AwsHarness.start({
    runtimeConfig: parseRuntimeConfig(
      {
        tables: [
          {
            source: 'sales.orders',
            target: 'public.orders',
            incremental: { cursor: 'seq', mode: 'merge', deletes: 'reconcile' },
          },
        ],
        locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30 },
      },
      'contract test config',
    ),
    ...ground.runOn,
    waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 500 },
  });
});

afterAll(async () => {
  await harness?.close();
});

describe('incremental deletes "reconcile" through the AWS contract harness', () => {
  it('unloads and imports the source keys with the delta, and deletes the rows gone from the source', async () => {
    const first = await harness.run({});
    expect((first.outcome as { output: RunSummary }).output.tables[0]).toMatchObject({
      mode: 'full',
      rows: 40,
    });
    await ground.source.query(`
      DELETE FROM sales.orders WHERE id IN (3, 30);
      INSERT INTO sales.orders VALUES (41, 1, 41);
    `);
    const { outcome } = await harness.run({});
    expect(outcome).toMatchObject({ status: 'SUCCEEDED' });
    expect((outcome as { output: RunSummary }).output.tables[0]).toMatchObject({
      mode: 'incremental',
      // merge reads from the watermark inclusive: row 40 comes again, unchanged.
      rows: 2,
      inserted: 1,
      updated: 0,
      deleted: 2,
    });
    const { rows } = await ground.target.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE id IN (3, 30))::int AS gone FROM public.orders`,
    );
    // Exactly the two: an empty or partial key table would have deleted more (and failed the proof).
    expect(rows[0]).toEqual({ n: 39, gone: 0 });
  });
});
