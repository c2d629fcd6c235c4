/**
 * The pipeline through the AWS contract harness: the synthesized state machine, each Task on
 * its real Lambda handler and AWS adapters, the SDK calls answered by the fakes as the
 * function's role and authorized by the synthesized stack's own IAM policies. Sources and
 * targets are real PostgreSQL databases; the pipeline signs in to
 * "Aurora" as its non-superuser role.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { STATE } from '../lib/pipeline-definition';
import { executionArnOf } from '../local/run/definition';
import { AwsHarness } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { uniqueRoles } from './support/swap-fixtures';

let ground: DatabasesAndBucket;
let harness: AwsHarness;
const roles = uniqueRoles('analyst');

const CONFIG = parseRuntimeConfig(
  {
    tables: [
      { source: 'sales.orders', target: 'public.orders', strategy: 'rename' },
      { source: 'sales.lines', target: 'public.lines', strategy: 'merge' },
    ],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract test config',
);

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint, customer text, amount numeric(12,2));
    INSERT INTO sales.orders SELECT g, 'customer ' || g, g * 1.5 FROM generate_series(1, 50) g;
    CREATE TABLE sales.lines (order_id bigint, line integer, sku text, PRIMARY KEY (order_id, line));
    INSERT INTO sales.lines SELECT g, 1, 'sku-' || g FROM generate_series(1, 20) g;
  `);
  await ground.target.query(`
    CREATE ROLE ${roles.analyst} NOLOGIN;
    CREATE TABLE public.orders (id bigint, customer text, amount numeric(12,2));
    INSERT INTO public.orders VALUES (100, 'old', 1);
    CREATE VIEW public.customers AS SELECT DISTINCT customer FROM public.orders;
    GRANT SELECT ON public.customers TO ${roles.analyst};
    CREATE TABLE public.lines (order_id bigint, line integer, sku text, PRIMARY KEY (order_id, line));
    INSERT INTO public.lines VALUES (1, 1, 'old'), (99, 1, 'gone');
    ALTER TABLE public.orders OWNER TO ${ground.owner};
    ALTER VIEW public.customers OWNER TO ${ground.owner};
    ALTER TABLE public.lines OWNER TO ${ground.owner};
  `);
  harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 500 },
  });
});

afterAll(async () => {
  await harness?.close();
});

describe('the pipeline through the AWS contract harness', () => {
  it('runs smoothly on the real handlers: SUCCEEDED, live tables replaced, views and grants kept, run files gone', async () => {
    const { outcome, historyEvents, invocations } = await harness.run({});
    expect(outcome).toMatchObject({ status: 'SUCCEEDED' });
    const summary = (outcome as { output: RunSummary }).output;
    expect(summary.status).toBe('SUCCEEDED');
    expect(summary.tables.map((table) => [table.target, table.status, table.rows])).toEqual([
      ['public.orders', 'swapped', 50],
      ['public.lines', 'swapped', 20],
    ]);
    const live = await ground.target.query(`SELECT
      (SELECT count(*)::int FROM public.orders) AS orders,
      (SELECT count(*)::int FROM public.orders WHERE id = 100) AS old,
      (SELECT count(*)::int FROM public.customers) AS customers,
      (SELECT count(*)::int FROM public.lines WHERE order_id = 99) AS gone,
      has_table_privilege('${roles.analyst}', 'public.customers', 'SELECT') AS granted`);
    expect(live.rows[0]).toEqual({ orders: 50, old: 0, customers: 50, gone: 0, granted: true });
    // Each function called AWS as its own role; the Redshift statement functions share one.
    expect(new Set(invocations.map((call) => call.role)).size).toBeGreaterThan(3);
    expect(harness.roleOf('check-unload')).toBe(harness.roleOf('start-unload'));
    expect(historyEvents).toBeLessThan(25_000);
    const left = await readdir(join(ground.s3Dir, harness.resources.bucket), {
      recursive: true,
      withFileTypes: true,
    });
    expect(left.filter((entry) => entry.isFile() && entry.parentPath.includes('runs'))).toEqual([]);
  });

  it('waits for a reader holding the live table, then swaps', async () => {
    const reader = await ground.targetDb.connect('nightly report');
    await reader.query('BEGIN');
    await reader.query('SELECT count(*) FROM public.orders');
    const released = new Promise((resolve) => setTimeout(resolve, 4000)).then(() =>
      reader.query('COMMIT'),
    );
    const { outcome } = await harness.run({ tables: ['public.orders'] });
    await released;
    expect(outcome).toMatchObject({ status: 'SUCCEEDED' });
    const [orders] = (outcome as { output: RunSummary }).output.tables;
    expect(orders!.waitedSeconds).toBeGreaterThan(0.5);
    expect(orders!.blockers).toEqual([
      expect.objectContaining({ application: 'nightly report', relation: 'public.orders' }),
    ]);
  });

  it('refuses a run while a running execution holds the lease, and takes it over once that execution was stopped', async () => {
    const other = executionArnOf(harness.resources.stateMachineArn, 'other-run');
    const listed = {
      executionArn: other,
      stateMachineArn: harness.resources.stateMachineArn,
      name: 'other-run',
      status: 'RUNNING' as 'RUNNING' | 'ABORTED',
      startDate: new Date(),
    };
    harness.stepFunctions.executions.push(listed);
    await ground.target.query(
      `INSERT INTO redshift_sync.run_lease (environment, run_id, execution_arn)
       VALUES ($1, 'other-run', $2)`,
      [harness.resources.environment.ENVIRONMENT_NAME, other],
    );
    const refused = await harness.run({ tables: ['public.orders'] });
    expect(refused.outcome).toMatchObject({ status: 'SUCCEEDED' });
    const summary = (refused.outcome as { output: RunSummary }).output;
    expect(summary.status).toBe('NOT_STARTED');
    expect(summary.error?.message).toContain('other-run');
    listed.status = 'ABORTED';
    const { outcome } = await harness.run({ tables: ['public.orders'] });
    expect((outcome as { output: RunSummary }).output.status).toBe('SUCCEEDED');
    const { rows } = await ground.target.query(
      'SELECT count(*)::int AS n FROM redshift_sync.run_lease',
    );
    expect(rows[0].n).toBe(0);
  });

  it('fails a stage (an empty source) through fail-run, which cleans up and publishes to the alarm topic', async () => {
    await ground.source.query('TRUNCATE sales.lines');
    try {
      const { outcome } = await harness.run({ tables: ['public.lines'] });
      expect(outcome).toMatchObject({ status: 'FAILED' });
      expect(harness.sns.published.at(-1)).toMatchObject({
        topicArn: harness.resources.alarmTopicArn,
        by: harness.roleOf('fail-run'),
      });
      const kept = await ground.target.query('SELECT count(*)::int AS n FROM public.lines');
      expect(kept.rows[0].n).toBe(20);
    } finally {
      await ground.source.query(
        `INSERT INTO sales.lines SELECT g, 1, 'sku-' || g FROM generate_series(1, 20) g`,
      );
    }
  });
});
