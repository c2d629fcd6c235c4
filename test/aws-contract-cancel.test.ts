import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { STATE } from '../lib/pipeline-definition';
import { AwsHarness, type HarnessStack, synthesizeStack } from './aws-contract/harness';
import { listOf, type PolicyStatement } from './aws-contract/iam/policy';
import type { TemplatePolicies } from './aws-contract/iam/template';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { type FakeSessions, fakeSessionsOn } from './support/fake-sessions';

let ground: DatabasesAndBucket;
let source: pg.Client;
let sessions: FakeSessions;
let stack: HarnessStack;

const CONFIG = parseRuntimeConfig(
  {
    tables: [{ source: 'sales.orders', target: 'public.orders', strategy: 'rename' }],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract cancel test config',
);
/** What "Check whether the unload finished" fails with in these runs. */
const CHECK_FAILURE = 'the check-unload function crashed';

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-cancel');
  source = await ground.sourceDb.connect('test lock holder');
  sessions = await fakeSessionsOn(ground.sourceDb);
  await source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint, customer text);
    INSERT INTO sales.orders SELECT g, 'customer ' || g FROM generate_series(1, 30) g;
  `);
  await ground.target.query(`
    CREATE TABLE public.orders (id bigint, customer text);
    ALTER TABLE public.orders OWNER TO ${ground.targetDb.pipelineLogin.user};
  `);
  stack = synthesizeStack(CONFIG);
});

/**
 * Runs the pipeline while sales.orders is locked, so the UNLOAD waits; "Check whether the
 * unload finished" then fails, and the run goes to fail-run with the unload still running.
 * `check` looks at the harness before it closes (closing ends the fake's sessions).
 */
async function failDuringUnload(
  runStack: HarnessStack,
  check: (harness: AwsHarness, run: Awaited<ReturnType<AwsHarness['run']>>) => Promise<void>,
): Promise<void> {
  await source.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
  const harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    stack: runStack,
    waitTimeOverrides: { [STATE.waitForUnload]: 100 },
    beforeInvoke: async (handler) => {
      if (handler !== 'check-unload') return;
      await sessions.untilOneWaitsForLock();
      throw new Error(CHECK_FAILURE);
    },
  });
  try {
    await check(harness, await harness.run({}));
  } finally {
    await source.query('ROLLBACK');
    await harness.close();
  }
}

describe('a run that fails while Redshift still unloads', () => {
  it('has fail-run cancel the UNLOAD as the role that submitted it, and roll its session back', async () => {
    await failDuringUnload(stack, async (harness, run) => {
      const shared = harness.roleOf('start-unload');
      expect(harness.roleOf('fail-run')).toBe(shared);
      expect(run.outcome).toMatchObject({
        status: 'FAILED',
        error: 'Error',
        cause: expect.stringContaining(CHECK_FAILURE),
      });
      expect(harness.redshiftData.cancels).toEqual([
        { statementId: expect.any(String), role: shared, answer: 'cancelled' },
      ]);
      const { statementId } = harness.redshiftData.cancels[0]!;
      const described = await harness.redshiftData.describeStatement(
        { roleArn: shared },
        { Id: statementId },
      );
      expect(described.Status).toBe('ABORTED');
      // The UNLOAD no longer waits for the table, and the session holds no transaction open.
      expect(await sessions.now()).toEqual([{ state: 'idle', waiting: 'Client' }]);
      expect(harness.sns.published).toHaveLength(1);
    });
  });

  it('on a role of its own, fail-run may not cancel it, and still reports the run`s own failure', async () => {
    const shared =
      stack.policies.functions[stack.synthesized.functionLogicalIds['fail-run']]!.roleArn;
    const own = shared.replace(/role\/.*$/, 'role/fail-run-own');
    const failRun = stack.synthesized.functionLogicalIds['fail-run'];
    const policies: TemplatePolicies = {
      ...stack.policies,
      roles: {
        ...stack.policies.roles,
        [own]: { ...stack.policies.roles[shared]!, logicalId: 'FailRunOwnRole', arn: own },
      },
      functions: {
        ...stack.policies.functions,
        [failRun]: { ...stack.policies.functions[failRun]!, roleArn: own },
      },
    };
    await failDuringUnload({ ...stack, policies }, async (harness, run) => {
      expect(harness.roleOf('fail-run')).toBe(own);
      // The Data API does not show it another role's statement.
      expect(harness.redshiftData.cancels).toEqual([
        { statementId: expect.any(String), role: own, answer: 'ResourceNotFoundException' },
      ]);
      const { statementId } = harness.redshiftData.cancels[0]!;
      const described = await harness.redshiftData.describeStatement(
        { roleArn: shared },
        { Id: statementId },
      );
      expect(described.Status).toBe('STARTED');
      expect(await sessions.now()).toEqual([{ state: 'active', waiting: 'Lock' }]);
      // The failed cancel is logged as incomplete clean-up; the run reports what failed it.
      expect(run.outcome).toMatchObject({
        status: 'FAILED',
        error: 'Error',
        cause: expect.stringContaining(CHECK_FAILURE),
      });
      expect(JSON.stringify(harness.sns.published)).toContain(CHECK_FAILURE);
    });
  });

  it('without the grant for calls on its sessions ("*"), the ROLLBACK on the session is refused', async () => {
    // A call with only SessionId names no cluster: the grant on the cluster does not cover it.
    const shared =
      stack.policies.functions[stack.synthesized.functionLogicalIds['fail-run']]!.roleArn;
    const role = stack.policies.roles[shared]!;
    const onSessions = (statement: PolicyStatement) =>
      JSON.stringify(statement.Condition ?? {}).includes('session-owner-iam-userid');
    const documents = role.policies.map((document) => ({
      ...document,
      Statement: listOf(document.Statement).filter((statement) => !onSessions(statement)),
    }));
    expect(JSON.stringify(documents)).not.toBe(JSON.stringify(role.policies));
    const policies: TemplatePolicies = {
      ...stack.policies,
      roles: { ...stack.policies.roles, [shared]: { ...role, policies: documents } },
    };
    await failDuringUnload({ ...stack, policies }, async (harness) => {
      expect(harness.redshiftData.cancels).toEqual([
        { statementId: expect.any(String), role: shared, answer: 'cancelled' },
      ]);
      // Cancelled, but its transaction stays open (aborted) until the session closes.
      expect(await sessions.now()).toEqual([
        { state: 'idle in transaction (aborted)', waiting: 'Client' },
      ]);
    });
  });
});
