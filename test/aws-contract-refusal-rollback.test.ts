/**
 * A run that "Check whether the unload finished" refuses (here: a value too long for its text
 * form, found by the oversize count of the session's first call), through the AWS contract
 * harness: the step rolls its Redshift session back and fails the run, and fail-run, seeing
 * that ROLLBACK finished (ListStatements), neither cancels the ended call nor rolls the session
 * back a second time. When the step's ROLLBACK never reached Redshift (a Lambda killed or cut
 * off before it), fail-run still rolls the session back: either way no transaction is left
 * open on the source.
 */

import type {
  BatchExecuteStatementCommandInput,
  BatchExecuteStatementCommandOutput,
} from '@aws-sdk/client-redshift-data';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { STATE } from '../lib/pipeline-definition';
import type { AwsPrincipal } from './aws-contract/access';
import { AwsHarness, type HarnessRun, synthesizeStack } from './aws-contract/harness';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

let ground: DatabasesAndBucket;
let observer: pg.Client;

const CONFIG = parseRuntimeConfig(
  {
    tables: [{ source: 'sales.docs', target: 'public.docs' }],
    locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
  },
  'contract refusal rollback test config',
);
const stack = synthesizeStack(CONFIG);

beforeAll(async () => {
  ground = await databasesAndBucket('aws-contract-refusal-rollback');
  observer = await ground.sourceDb.connect('test observer');
  // 32767 bytes of bytea make 65536 characters of hex, one past what Redshift converts.
  await observer.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.docs (id bigint, blob bytea);
    INSERT INTO sales.docs VALUES (1, decode(repeat('ab', 32767), 'hex')), (2, '\\x00ff');
  `);
});

afterAll(async () => {
  await observer?.end();
});

/** The source's backends of the Data API fake's sessions: 'idle in transaction' holds locks. */
async function unloadSessions(): Promise<{ state: string }[]> {
  const { rows } = await observer.query<{ state: string }>(
    `SELECT state FROM pg_stat_activity WHERE application_name = 'redshift-data-api fake session'`,
  );
  return rows;
}

/**
 * Runs the refused run; with `loseStepRollback`, the ROLLBACK check-unload submits fails before
 * it reaches the service. `check` runs before the harness closes (closing ends the sessions).
 */
async function refusedRun(
  loseStepRollback: boolean,
  check: (harness: AwsHarness, run: HarnessRun, rollbacks: string[]) => Promise<void>,
): Promise<void> {
  const harness = await AwsHarness.start({
    runtimeConfig: CONFIG,
    ...ground.runOn,
    stack,
    waitTimeOverrides: { [STATE.waitForUnload]: 100 },
  });
  const fake = harness.redshiftData;
  const submit = fake.batchExecuteStatement.bind(fake);
  let lost = false;
  fake.batchExecuteStatement = async (
    principal: AwsPrincipal,
    input: BatchExecuteStatementCommandInput,
  ): Promise<BatchExecuteStatementCommandOutput> => {
    if (loseStepRollback && !lost && input.StatementName?.endsWith(' rollback')) {
      lost = true;
      throw Object.assign(new Error('the function was stopped before its call'), {
        name: 'TimeoutError',
      });
    }
    return submit(principal, input);
  };
  try {
    const run = await harness.run({});
    const listed = await fake.listStatements(
      { roleArn: harness.roleOf('start-unload') },
      { StatementName: 'redshift-aurora-sync ', Status: 'ALL' },
    );
    const rollbacks = (listed.Statements ?? [])
      .filter((statement) => statement.StatementName?.endsWith(' rollback'))
      .map((statement) => statement.Status ?? 'unknown');
    await check(harness, run, rollbacks);
  } finally {
    await harness.close();
  }
}

describe('a run check-unload refuses after its first call', () => {
  it('is rolled back once, by check-unload: fail-run sees that ROLLBACK finished and leaves the session alone', async () => {
    await refusedRun(false, async (harness, run, rollbacks) => {
      expect(run.outcome).toMatchObject({ status: 'FAILED' });
      expect(JSON.stringify(harness.sns.published.at(-1))).toContain('nothing was unloaded');
      expect(rollbacks).toEqual(['FINISHED']);
      // The call $.unload names had ended: there is nothing to cancel.
      expect(harness.redshiftData.cancels).toEqual([]);
      expect(await unloadSessions()).toEqual([{ state: 'idle' }]);
    });
  }, 120_000);

  it("is rolled back by fail-run when check-unload's ROLLBACK never reached Redshift", async () => {
    await refusedRun(true, async (harness, run, rollbacks) => {
      expect(run.outcome).toMatchObject({ status: 'FAILED' });
      expect(JSON.stringify(harness.sns.published.at(-1))).toContain('nothing was unloaded');
      expect(rollbacks).toEqual(['FINISHED']);
      expect(await unloadSessions()).toEqual([{ state: 'idle' }]);
    });
  }, 120_000);
});
