/**
 * What the AWS contract harness exists for: each test takes the stack as synthesized, takes
 * one grant away or breaks one wiring in its policies (here, never in lib/), runs the pipeline
 * through the harness, and shows the run fails where it would fail in AWS, naming the action.
 * The last one runs into a Step Functions limit instead of IAM.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { tableS3Prefix } from '../lambdas/core/unload/statement';
import type { PipelineFunctionName } from '../lib/function-access';
import { STATE } from '../lib/pipeline-definition';
import {
  AwsHarness,
  type AwsHarnessOptions,
  type HarnessRun,
  type HarnessStack,
  synthesizeStack,
} from './aws-contract/harness';
import { listOf, type PolicyDocument, type PolicyStatement } from './aws-contract/iam/policy';
import type { TemplatePolicies } from './aws-contract/iam/template';
import { AWS_LIMITS } from './aws-contract/limits';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

let ground: DatabasesAndBucket;
/** The stack as lib/ synthesizes it for CONFIG; each test changes a copy of its policies. */
let stack: HarnessStack;

const CONFIG = parseRuntimeConfig(
  {
    tables: [{ source: 'sales.orders', target: 'public.orders', strategy: 'rename' }],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract defects test config',
);

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-defects');
  await ground.source.query(`
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

/** Runs the pipeline once through a harness over `stack`. */
async function runThrough(
  runStack: HarnessStack,
  options: Partial<AwsHarnessOptions> = {},
  executionName?: string,
): Promise<HarnessRun & { harness: AwsHarness }> {
  const harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    stack: runStack,
    waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 200 },
    ...options,
  });
  try {
    return { ...(await harness.run({}, executionName)), harness };
  } finally {
    await harness.close();
  }
}

/** The first state that failed, with the error and cause Step Functions recorded for it. */
function firstFailure(run: HarnessRun): { state: string; error: string; cause: string } {
  const failed = run.events.find((event) => event.type === 'StateFailed');
  if (failed?.type !== 'StateFailed') throw new Error('no state failed');
  return {
    state: failed.state.name,
    error: failed.Error,
    cause: typeof failed.Cause === 'string' ? failed.Cause : JSON.stringify(failed.Cause),
  };
}

function roleOf(policies: TemplatePolicies, handler: PipelineFunctionName): string {
  return policies.functions[stack.synthesized.functionLogicalIds[handler]]!.roleArn;
}

/** `document` without the statements `drop` picks; `actions` taken out of the statements left. */
function edited(
  document: PolicyDocument,
  change: {
    readonly actions?: readonly string[];
    readonly drop?: (statement: PolicyStatement) => boolean;
  },
): PolicyDocument {
  const statements = listOf(document.Statement).flatMap((statement) => {
    if (change.drop?.(statement)) return [];
    if (!change.actions || statement.Action === undefined) return [statement];
    const actions = listOf(statement.Action).filter((action) => !change.actions!.includes(action));
    return actions.length === 0 ? [] : [{ ...statement, Action: actions }];
  });
  return { ...document, Statement: statements };
}

/** `policies` with `actions` taken out of every identity policy of `roleArn`. */
function withoutRoleActions(
  policies: TemplatePolicies,
  roleArn: string,
  actions: readonly string[],
): TemplatePolicies {
  const role = policies.roles[roleArn]!;
  const changed = role.policies.map((document) => edited(document, { actions }));
  expect(JSON.stringify(changed)).not.toBe(JSON.stringify(role.policies));
  return { ...policies, roles: { ...policies.roles, [roleArn]: { ...role, policies: changed } } };
}

/**
 * `policies` with create-staging unable to reach Aurora, so that a run fails after the unload,
 * on a role fail-run does not share (it shares start-unload's: lib/handlers.ts, roleGroupOf).
 */
function failingAtStaging(policies: TemplatePolicies): TemplatePolicies {
  return withoutRoleActions(policies, roleOf(policies, 'create-staging'), [
    'rds-data:ExecuteStatement',
  ]);
}

function withPolicies(policies: TemplatePolicies, from: HarnessStack = stack): HarnessStack {
  return { ...from, policies };
}

describe('the contract harness catches what would fail in AWS', () => {
  it('start-unload without s3:ListBucket: the first deployed run fails clearing the run folder', async () => {
    const policies = withoutRoleActions(stack.policies, roleOf(stack.policies, 'start-unload'), [
      's3:ListBucket',
    ]);
    const run = await runThrough(withPolicies(policies));
    expect(run.outcome).toMatchObject({ status: 'FAILED', error: 'AccessDenied' });
    expect(firstFailure(run)).toMatchObject({
      state: STATE.startUnload,
      error: 'AccessDenied',
      cause: expect.stringMatching(
        /is not authorized to perform: s3:ListBucket on resource: arn:aws:s3:::[a-z0-9]+ /,
      ),
    });
    expect(run.invocations.map((call) => call.handler)).toContain('fail-run');
  });

  it('start-unload without s3:DeleteObject: a retried unload fails clearing what the earlier attempt wrote', async () => {
    const policies = withoutRoleActions(stack.policies, roleOf(stack.policies, 'start-unload'), [
      's3:DeleteObject',
    ]);
    // prepare-run clears runs/ at the start of every run, so only a retried start-unload
    // finds files in its folder: those its first attempt's UNLOAD wrote.
    const run = await runThrough(withPolicies(policies), {
      beforeInvoke: async (handler, input) => {
        if (handler !== 'start-unload') return;
        const { runId } = (input as { run: { runId: string } }).run;
        const bucket =
          stack.policies.functions[stack.synthesized.functionLogicalIds[handler]]!.environment
            .RUN_BUCKET!;
        const folder = tableS3Prefix(bucket, runId, CONFIG.tables[0]!.target);
        const path = join(ground.s3Dir, folder.slice('s3://'.length));
        await mkdir(path, { recursive: true });
        await writeFile(join(path, '0000_part_00'), 'left');
      },
    });
    expect(firstFailure(run)).toMatchObject({
      state: STATE.startUnload,
      cause: expect.stringContaining('is not authorized to perform: s3:DeleteObject'),
    });
  });

  it('check-unload on its own role: the Data API does not show it the statement start-unload submitted', async () => {
    const shared = roleOf(stack.policies, 'start-unload');
    const own = shared.replace(/role\/.*$/, 'role/check-unload-own');
    const checkUnload = stack.synthesized.functionLogicalIds['check-unload'];
    const policies: TemplatePolicies = {
      ...stack.policies,
      roles: {
        ...stack.policies.roles,
        [own]: { ...stack.policies.roles[shared]!, logicalId: 'CheckUnloadOwnRole', arn: own },
      },
      functions: {
        ...stack.policies.functions,
        [checkUnload]: { ...stack.policies.functions[checkUnload]!, roleArn: own },
      },
    };
    const run = await runThrough(withPolicies(policies));
    expect(run.invocations.find((call) => call.handler === 'check-unload')?.role).toBe(own);
    expect(firstFailure(run)).toMatchObject({
      state: STATE.checkUnload,
      error: 'WarehouseError',
      cause: expect.stringContaining(
        'DescribeStatement on cluster local, database local failed: ResourceNotFoundException: Query does not exist.',
      ),
    });
  });

  it('an imported UNLOAD role without its bucket and key policy statements cannot write the files', async () => {
    const imported = `arn:aws:iam::${stack.synthesized.environment.account}:role/existing-unload`;
    const importedStack = synthesizeStack(CONFIG, { unloadRoleArn: imported });
    const names = (statement: PolicyStatement) =>
      JSON.stringify(statement.Principal ?? '').includes(imported);
    const { bucketPolicies, keyPolicies } = importedStack.policies;
    const policies: TemplatePolicies = {
      ...importedStack.policies,
      bucketPolicies: Object.fromEntries(
        Object.entries(bucketPolicies).map(([bucket, doc]) => [
          bucket,
          edited(doc, { drop: names }),
        ]),
      ),
      keyPolicies: Object.fromEntries(
        Object.entries(keyPolicies).map(([key, doc]) => [key, edited(doc, { drop: names })]),
      ),
    };
    expect(JSON.stringify(importedStack.policies.bucketPolicies)).toContain(imported);
    expect(JSON.stringify([policies.bucketPolicies, policies.keyPolicies])).not.toContain(imported);
    // The role CDK cannot change has no identity policy in the stack: the resource policies
    // alone let it write (the run succeeds), and without them UNLOAD is refused.
    // The handlers keep the ports they built at their first invocation, with the environment of
    // that time (lambdas/handlers/lambda.ts), as a warm Lambda container does; a new deployment
    // is new containers: load the handlers afresh for this stack's UNLOAD_ROLE_ARN, and again after.
    vi.resetModules();
    onTestFinished(() => {
      vi.resetModules();
    });
    const granted = await runThrough(importedStack);
    expect(granted.outcome).toMatchObject({ status: 'SUCCEEDED' });
    const run = await runThrough(withPolicies(policies, importedStack));
    expect(firstFailure(run)).toMatchObject({
      state: STATE.checkUnload,
      cause: expect.stringContaining(`User: ${imported} is not authorized to perform: s3:`),
    });
  });

  it("Aurora's s3Import role without kms:Decrypt cannot read the SSE-KMS run files", async () => {
    const importRole = Object.values(stack.policies.roles).find((role) =>
      role.logicalId.includes('AuroraImportRole'),
    )!.arn;
    const policies = withoutRoleActions(stack.policies, importRole, ['kms:Decrypt']);
    const run = await runThrough(withPolicies(policies));
    expect(firstFailure(run)).toMatchObject({
      state: STATE.importFiles,
      cause: expect.stringContaining(
        `User: ${importRole} is not authorized to perform: kms:Decrypt on resource: ${stack.policies.bucketKeys[Object.keys(stack.policies.bucketKeys)[0]!]}`,
      ),
    });
  });

  it('fail-run without sns:Publish: the failed run cleans up but nobody is told', async () => {
    const failRunRole = roleOf(stack.policies, 'fail-run');
    const policies = withoutRoleActions(failingAtStaging(stack.policies), failRunRole, [
      'sns:Publish',
    ]);
    const run = await runThrough(withPolicies(policies), {}, 'unnotified');
    expect(run.harness.sns.published).toEqual([]);
    // fail-run cleaned up before it tried to publish: the run's files are gone.
    const runDir = join(ground.s3Dir, run.harness.resources.bucket, 'runs', 'unnotified');
    const left = await readdir(runDir, { recursive: true, withFileTypes: true });
    expect(left.filter((entry) => entry.isFile())).toEqual([]);
    const failures = run.events.filter((event) => event.type === 'StateFailed');
    expect(failures.map((event) => event.type === 'StateFailed' && event.state.name)).toContain(
      STATE.failRun,
    );
    // The execution then reports the refused Publish, not the failure that started it.
    expect(run.outcome).toMatchObject({
      status: 'FAILED',
      error: 'AuthorizationErrorException',
      cause: expect.stringContaining(
        `User: ${failRunRole} is not authorized to perform: sns:Publish`,
      ),
    });
  });

  it("fail-run without kms:GenerateDataKey: SNS refuses the message for the alarm topic's key", async () => {
    const failRunRole = roleOf(stack.policies, 'fail-run');
    const policies = withoutRoleActions(failingAtStaging(stack.policies), failRunRole, [
      'kms:GenerateDataKey',
    ]);
    const run = await runThrough(withPolicies(policies));
    expect(run.harness.sns.published).toEqual([]);
    expect(run.outcome).toMatchObject({
      status: 'FAILED',
      error: 'KMSAccessDeniedException',
      cause: expect.stringContaining(
        `User: ${failRunRole} is not authorized to perform: kms:GenerateDataKey`,
      ),
    });
  });
});

describe('the contract harness enforces Step Functions limits', () => {
  it('a cluster of 3,000 slices (a file per slice) stays far below 256 KiB of state: file lists stay in the bucket', async () => {
    // Before the file lists moved into the run files, check-unload returned every file's key
    // into the state: this run ended States.DataLimitExceeded (351,138 bytes), outside any
    // Catch, leaving its files behind.
    const slices = 3000;
    await ground.source.query(`INSERT INTO sales.orders
      SELECT g, 'customer ' || g FROM generate_series(31, ${slices}) g`);
    try {
      const run = await runThrough(stack, { redshiftSlices: slices }, 'many-slices');
      expect(run.outcome).toMatchObject({ status: 'SUCCEEDED' });
      expect(run.largestStateBytes).toBeLessThan(AWS_LIMITS.stepFunctions.maxPayloadBytes / 8);
    } finally {
      await ground.source.query('DELETE FROM sales.orders WHERE id > 30');
    }
  });
});
