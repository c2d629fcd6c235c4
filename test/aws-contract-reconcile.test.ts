/**
 * Incremental deletes "reconcile" through the AWS contract harness: the key-only UNLOAD goes
 * out on the Redshift Data API session with the delta, its files land in the table's run
 * folder and are imported by "Import files into staging" (the same loop, the state carrying
 * only counts), every call made as its function's role under the synthesized stack's IAM
 * policies; the rows gone from the source are deleted from live and counted.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { STATE } from '../lib/pipeline-definition';
import { AwsHarness } from './aws-contract/harness';
import { freshDatabase, type TestDatabase } from './support/db';
import { uniqueRoles } from './support/swap-fixtures';

let sourceDb: TestDatabase;
let targetDb: TestDatabase;
let source: pg.Client;
let target: pg.Client;
let harness: AwsHarness;
const roles = uniqueRoles('owner');

beforeAll(async () => {
  sourceDb = await freshDatabase();
  targetDb = await freshDatabase();
  source = await sourceDb.connect('test setup');
  target = await targetDb.connect('test setup');
  const s3Dir = await mkdtemp(join(tmpdir(), 'aws-contract-reconcile-'));
  await chmod(s3Dir, 0o755);
  await source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint PRIMARY KEY, amount numeric(12,2), seq bigint);
    INSERT INTO sales.orders SELECT g, g * 1.5, g FROM generate_series(1, 40) g;
  `);
  const pipeline = targetDb.pipelineLogin.user;
  await target.query(`
    CREATE ROLE ${roles.owner} NOLOGIN;
    CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), seq bigint);
    ALTER TABLE public.orders OWNER TO ${roles.owner};
    GRANT ${roles.owner} TO ${pipeline};
    GRANT USAGE, CREATE ON SCHEMA public TO ${pipeline}, ${roles.owner};
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
    sourceUrl: sourceDb.url,
    targetUrl: targetDb.pipelineUrl,
    adminUrl: targetDb.url,
    s3Dir,
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
    await source.query(`
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
    const { rows } = await target.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE id IN (3, 30))::int AS gone FROM public.orders`,
    );
    // Exactly the two: an empty or partial key table would have deleted more (and failed the proof).
    expect(rows[0]).toEqual({ n: 39, gone: 0 });
  });
});
