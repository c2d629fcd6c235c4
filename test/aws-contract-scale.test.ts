import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { STATE } from '../lib/pipeline-definition';
import { AwsHarness } from './aws-contract/harness';
import { AWS_LIMITS } from './aws-contract/limits';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

const TABLES = 40;
const names = Array.from({ length: TABLES }, (_, i) => `t${String(i + 1).padStart(2, '0')}`);

let ground: DatabasesAndBucket;
let harness: AwsHarness;

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-scale');
  await ground.source.query(
    `CREATE SCHEMA sales; ${names
      .map(
        (name, i) =>
          `CREATE TABLE sales.${name} (id bigint, note text);
           INSERT INTO sales.${name} SELECT g, '${name}' FROM generate_series(1, ${i + 1}) g;`,
      )
      .join('\n')}`,
  );
  harness = await AwsHarness.start({
    runtimeConfig: parseRuntimeConfig(
      {
        tables: names.map((name) => ({ source: `sales.${name}`, target: `public.${name}` })),
        locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30 },
      },
      'scale test config',
    ),
    ...ground.runOn,
    waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 500 },
  });
});

afterAll(async () => {
  await harness?.close();
});

describe('a run of 40 tables through the AWS contract harness', () => {
  it('unloads them in one session over several calls, and publishes every one', async () => {
    const run = await harness.run({});
    expect(run.outcome).toMatchObject({ status: 'SUCCEEDED' });
    const summary = (run.outcome as { output: RunSummary }).output;
    expect(summary.tables.map((table) => [table.target, table.status, table.rows])).toEqual(
      names.map((name, i) => [`public.${name}`, 'swapped', i + 1]),
    );
    const { rows } = await ground.target.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE 't%'`,
    );
    expect(rows[0]!.n).toBe(TABLES);
    // More statements than one batch holds (40): one session, more than one call on it.
    const sessions = [...harness.redshiftData.callsPerSession().values()];
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toBeGreaterThan(1);
    // What the run is billed by (bench/run-cost.ts prices it): the SDK calls the fakes saw as
    // the handlers made them, every Task a state transition, every function the template's memory.
    expect(run.sdkCalls['redshift-data:BatchExecuteStatement']).toBe(sessions[0]);
    expect(run.sdkCalls['redshift-data:ExecuteStatement']).toBe(TABLES);
    expect(run.stateTransitions).toBeGreaterThanOrEqual(run.invocations.length);
    expect(run.stateTransitions).toBeLessThan(run.historyEvents);
    for (const invocation of run.invocations) {
      expect(invocation.memoryMb).toBe(512);
      expect(invocation.durationMs).toBeGreaterThan(0);
    }
    // UNLOAD writes at least a file per slice (2) and a manifest per table.
    expect(run.s3Requests['s3:PutObject']).toBeGreaterThanOrEqual(TABLES * 3);
    expect(run.largestStateBytes).toBeLessThan(AWS_LIMITS.stepFunctions.maxPayloadBytes / 4);
    expect(run.historyEvents).toBeLessThan(AWS_LIMITS.stepFunctions.maxHistoryEvents / 10);
  }, 180_000);
});
