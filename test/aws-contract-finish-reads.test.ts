/**
 * What "Record the run and clean up" reads from S3, through the AWS contract harness, for a run
 * of several tables: the run's setup and unload record once each, and for each incremental
 * table its own figures once (the whole table's, for a delta), to give the summary the
 * watermark the swap wrote; nothing for a table without `incremental`. Each table's figures are
 * a file of their own (RunFiles), so there is no run-wide file to read once instead.
 */

import type { GetObjectCommandInput, GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { PipelineFunctionName } from '../lambdas/pipeline/steps';
import { STATE } from '../lib/pipeline-definition';
import type { AwsPrincipal } from './aws-contract/access';
import { AwsHarness, synthesizeStack } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

const INCREMENTAL = ['t1', 't2', 't3'];
const CONFIG = parseRuntimeConfig(
  {
    tables: [
      ...INCREMENTAL.map((name) => ({
        source: `sales.${name}`,
        target: `public.${name}`,
        incremental: { cursor: 'u', mode: 'merge' },
      })),
      { source: 'sales.plain', target: 'public.plain' },
    ],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract finish reads test config',
);
const stack = synthesizeStack(CONFIG);
const ALL = [...INCREMENTAL, 'plain'];

let ground: DatabasesAndBucket;

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-finish-reads');
  const pipeline = ground.targetDb.pipelineLogin.user;
  await ground.source.query(
    `CREATE SCHEMA sales;${ALL.map(
      (name) => `CREATE TABLE sales.${name} (id bigint PRIMARY KEY, v text, u bigint);
        INSERT INTO sales.${name} SELECT g, 'v' || g, g FROM generate_series(1, 5) g;`,
    ).join('')}`,
  );
  await ground.target.query(
    `${ALL.map(
      (name) => `CREATE TABLE public.${name} (id bigint PRIMARY KEY, v text, u bigint);
        ALTER TABLE public.${name} OWNER TO ${pipeline};`,
    ).join('')}`,
  );
});

/**
 * Runs the pipeline and returns the keys finish-run read, under the run's folder, with the
 * run's id and each table's hash left out (`figures/t1.json`).
 */
async function finishReads(): Promise<string[]> {
  let handler: PipelineFunctionName | null = null;
  const harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    stack,
    waitTimeOverrides: { [STATE.waitForUnload]: 100 },
    beforeInvoke: async (name) => {
      handler = name;
    },
  });
  const reads: string[] = [];
  const getObject = harness.s3.getObject.bind(harness.s3);
  harness.s3.getObject = async (
    principal: AwsPrincipal,
    input: GetObjectCommandInput,
  ): Promise<GetObjectCommandOutput> => {
    if (handler === 'finish-run') {
      reads.push((input.Key ?? '').replace(/^runs\/[^/]+\//, '').replace(/__[0-9a-f]+\./, '.'));
    }
    return getObject(principal, input);
  };
  try {
    const run = await harness.run({});
    expect(run.outcome).toMatchObject({ status: 'SUCCEEDED' });
    return reads.sort();
  } finally {
    await harness.close();
  }
}

describe('finish-run', () => {
  it('reads each run file once: the setup, the unload record, and the figures of each incremental table', async () => {
    // The first run takes every incremental table whole: its figures are the whole table's.
    expect(await finishReads()).toEqual([
      'figures/t1.json',
      'figures/t2.json',
      'figures/t3.json',
      'run.json',
      'unload.json',
    ]);
    // The next takes only the rows past the watermark: the whole table's figures give the new one.
    expect(await finishReads()).toEqual([
      'run.json',
      'unload.json',
      'whole-figures/t1.json',
      'whole-figures/t2.json',
      'whole-figures/t3.json',
    ]);
  }, 120_000);
});
