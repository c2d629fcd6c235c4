/**
 * The run lease: runs of one environment never overlap, whatever Step Functions' eventually
 * consistent ListExecutions shows. The steps run as the pipeline's non-superuser role, each
 * run on its own session, against real PostgreSQL.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { parseConfig, runtimeConfigJson } from '../lambdas/core/config';
import type { Warehouse } from '../lambdas/core/transfer/ports';
import type { ExecutionStatus, LogFields, PipelineDeps } from '../lambdas/pipeline/deps';
import { releaseRunLease } from '../lambdas/pipeline/run-lease';
import { failRun } from '../lambdas/pipeline/steps/finish';
import { prepareRun } from '../lambdas/pipeline/steps/prepare';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { freshDatabase, type TestDatabase } from './support/db';

const ENVIRONMENT = 'lease-test';
const STATE_MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:sync-test';
const arnOf = (runId: string) =>
  `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${runId}`;

let db: TestDatabase;
let admin: pg.Client;
const sessions: pg.Client[] = [];
let s3Dir: string;
/** What Step Functions says of each execution, by ARN; absent: it does not know it. */
const executions = new Map<string, ExecutionStatus>();
const warnings: { message: string; fields?: LogFields }[] = [];
const notices: string[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test setup');
  s3Dir = await mkdtemp(join(tmpdir(), 'run-lease-'));
  await admin.query('CREATE TABLE public.orders (id bigint)');
});

afterAll(async () => {
  for (const session of sessions) await session.end();
  await admin.end();
});

beforeEach(async () => {
  executions.clear();
  warnings.length = 0;
  notices.length = 0;
  await admin.query(`DELETE FROM redshift_sync.run_lease`).catch(() => {});
});

/** One Lambda invocation's dependencies: its own session as the pipeline role. */
async function depsOfRun(): Promise<PipelineDeps> {
  const session = await db.connect('redshift-aurora-sync', db.pipelineLogin);
  sessions.push(session);
  return {
    aurora: new PgSqlClient(session),
    warehouse: {} as Warehouse,
    objects: new LocalObjectStore(s3Dir),
    runs: { executionStatus: async (arn) => executions.get(arn) ?? 'unknown' },
    notifier: { notify: async (_subject, message) => void notices.push(message) },
    log: { info: () => {}, warn: (message, fields) => void warnings.push({ message, fields }) },
    metrics: { record: () => {} },
    settings: {
      environment: ENVIRONMENT,
      bucket: 'bucket',
      unloadRoleArn: 'arn:aws:iam::1:role/u',
      region: 'eu-west-1',
    },
    sleep: async () => {},
    now: () => Date.now(),
  };
}

function inputOf(runId: string, dryRun = false) {
  const config = parseConfig(
    { tables: [{ source: 'sales.orders', target: 'public.orders' }] },
    'test',
  );
  return {
    config: runtimeConfigJson(config),
    request: dryRun ? { dryRun: true } : {},
    context: { stateMachineArn: STATE_MACHINE, executionName: runId, executionArn: arnOf(runId) },
  };
}

async function leaseHolder(): Promise<string | null> {
  const { rows } = await admin.query(
    'SELECT run_id FROM redshift_sync.run_lease WHERE environment = $1',
    [ENVIRONMENT],
  );
  return rows[0]?.run_id ?? null;
}

describe('the run lease', () => {
  it('lets exactly one of two runs started together go on, naming it to the other', async () => {
    for (const round of [1, 2, 3]) {
      const [a, b] = [`run-${round}-a`, `run-${round}-b`];
      // Both are running, and neither's ListExecutions would show the other yet.
      executions.set(arnOf(a), 'running');
      executions.set(arnOf(b), 'running');
      const [depsA, depsB] = [await depsOfRun(), await depsOfRun()];
      const outcomes = await Promise.all([
        prepareRun(inputOf(a), depsA),
        prepareRun(inputOf(b), depsB),
      ]);
      const goes = outcomes.filter((outcome) => 'run' in outcome);
      const refused = outcomes.filter((outcome) => 'notStarted' in outcome);
      expect(goes).toHaveLength(1);
      expect(refused).toHaveLength(1);
      const winner = 'run' in goes[0]! ? goes[0].run.runId : '';
      expect(await leaseHolder()).toBe(winner);
      const summary = 'notStarted' in refused[0]! ? refused[0].notStarted : null;
      expect(summary?.status).toBe('NOT_STARTED');
      expect(summary?.error?.name).toBe('RunInProgress');
      expect(summary?.error?.message).toContain(
        `another run of ${ENVIRONMENT} is in progress (${winner}`,
      );
      expect(await releaseRunLease(depsA.aurora, ENVIRONMENT, winner)).toBe(true);
    }
  });

  it('takes over the lease a stopped run left, and only one of two runs does', async () => {
    const killed = await depsOfRun();
    expect('run' in (await prepareRun(inputOf('killed-run'), killed))).toBe(true);
    executions.set(arnOf('killed-run'), 'ended');
    executions.set(arnOf('next-a'), 'running');
    executions.set(arnOf('next-b'), 'running');
    const outcomes = await Promise.all([
      prepareRun(inputOf('next-a'), await depsOfRun()),
      prepareRun(inputOf('next-b'), await depsOfRun()),
    ]);
    expect(outcomes.filter((outcome) => 'run' in outcome)).toHaveLength(1);
    expect(['next-a', 'next-b']).toContain(await leaseHolder());
    expect(warnings.filter((w) => w.message.startsWith('took over the run lease'))).toHaveLength(1);
    expect(warnings.find((w) => w.message.startsWith('took over'))?.fields).toMatchObject({
      previous: { runId: 'killed-run', executionArn: arnOf('killed-run') },
    });
  });

  it('keeps the lease of an execution Step Functions does not know, and says how to give it back', async () => {
    await prepareRun(inputOf('vanished'), await depsOfRun());
    executions.set(arnOf('after'), 'running');
    const outcome = await prepareRun(inputOf('after'), await depsOfRun());
    expect('notStarted' in outcome && outcome.notStarted.error?.message).toContain(
      `DELETE FROM redshift_sync.run_lease WHERE environment = '${ENVIRONMENT}'`,
    );
    expect(await leaseHolder()).toBe('vanished');
  });

  it('is given back by its own run only: a refused or other run failing leaves it held', async () => {
    executions.set(arnOf('holder'), 'running');
    const deps = await depsOfRun();
    expect('run' in (await prepareRun(inputOf('holder', true), deps))).toBe(true);
    // A run refused at the start fails without $.run; another run's state names itself.
    await failRun({ error: { Error: 'RunInProgress', Cause: 'x' } }, deps);
    const other = {
      runId: 'other',
      environment: ENVIRONMENT,
      startedAt: new Date().toISOString(),
      dryRun: true,
      pollIntervalSeconds: 1,
      maxWaitSeconds: 1,
      targets: [],
    };
    await failRun({ run: other, error: { Error: 'States.Timeout', Cause: 'x' } }, deps);
    expect(await releaseRunLease(deps.aurora, ENVIRONMENT, 'other')).toBe(false);
    expect(await leaseHolder()).toBe('holder');
    // Its own failure gives it back.
    const own = { ...other, runId: 'holder' };
    await failRun({ run: own, error: { Error: 'States.Timeout', Cause: 'x' } }, deps);
    expect(await leaseHolder()).toBeNull();
  });
});
