/**
 * "Prepare the run": validate the execution input against the configuration, refuse a
 * second run of the same environment, clear what a killed run left, and fix the run's plan.
 * "Describe the dry run": what the run would do, without doing it.
 *
 * The two steps that begin every run, before anything is unloaded (functions prepare-run and
 * dry-run).
 */
import { parseRuntimeConfig, runtimeConfigJson, selectTables } from '../../core/config';
import { PreflightError } from '../../core/errors';
import { displayQualified, sameQualifiedName } from '../../core/identifiers';
import { dropStaleStaging } from '../../core/load/staging';
import { inspectLocks } from '../../core/locks/inspect';
import { lockVerdict } from '../../core/locks/verdict';
import { ADMIN_SCHEMA, STAGING_SCHEMA } from '../../core/schema/admin';
import { installSchema } from '../../core/schema/install';
import { runScopedName, validateRunId } from '../../core/swap/plan';
import { preflight } from '../../core/swap/preflight';
import { type PublishKind, STRATEGY_LOCKS } from '../../core/swap/types';
import type { PipelineDeps } from '../deps';
import { dryRunIncrements } from '../increments';
import { parseRunRequest } from '../request';
import { loadRun, preflightTable } from '../run-context';
import { RUNS_PREFIX, RunFiles } from '../run-files';
import { releaseRunLease, takeRunLease } from '../run-lease';
import { describeBlocker, parseStepInput, type RunState, STEP_INPUTS } from '../state';
import type { RunSummary } from '../summary';

/**
 * Runs of one environment never overlap: a run started while another is in progress does
 * nothing and ends with this summary. It is not a failure (nothing broke, nobody need be paged),
 * so it is returned, not thrown, and the state machine ends it as succeeded.
 */
export interface NotStarted {
  readonly notStarted: RunSummary & { readonly status: 'NOT_STARTED' };
}

export async function prepareRun(
  input: unknown,
  deps: PipelineDeps,
): Promise<{ run: RunState } | NotStarted> {
  const {
    config: rawConfig,
    request: rawRequest,
    context,
  } = parseStepInput(STEP_INPUTS.prepare, input);
  const config = parseRuntimeConfig(rawConfig, 'the configuration in the state machine');
  const request = parseRunRequest(rawRequest);
  const tables = selectTables(config, request.tables, 'the execution input');
  const runId = validateRunId(context.executionName);
  const environment = deps.settings.environment;
  // The lease lives in the pipeline's schema, so the schema comes first, for dry runs too.
  await installPipelineSchema(deps);
  const lease = await takeRunLease(
    deps.aurora,
    { environment, runId, executionArn: context.executionArn },
    (executionArn) => deps.runs.executionStatus(executionArn),
  );
  if (!lease.taken) {
    const { holder } = lease;
    const message =
      lease.holderStatus === 'running'
        ? `another run of ${environment} is in progress (${holder.runId}, execution ${holder.executionArn}, since ${holder.takenAt}); runs of one environment never overlap. Wait for it to end, or stop it, then start this one again.`
        : `run ${holder.runId} (execution ${holder.executionArn}) holds the run lease of ${environment} since ${holder.takenAt}, and Step Functions does not know that execution. If it no longer exists, give the lease back with DELETE FROM ${ADMIN_SCHEMA}.run_lease WHERE environment = '${environment.replaceAll("'", "''")}', then start this run again.`;
    deps.log.warn('not started: another run holds the run lease', { runId, holder });
    return {
      notStarted: {
        status: 'NOT_STARTED',
        runId,
        environment,
        startedAt: null,
        finishedAt: new Date(deps.now()).toISOString(),
        unloadSubmittedAt: null,
        tables: [],
        error: { name: 'RunInProgress', message },
      },
    };
  }
  if (lease.tookOverFrom) {
    deps.log.warn('took over the run lease of a run that ended without giving it back', {
      runId,
      previous: lease.tookOverFrom,
    });
  }
  const startedAt = new Date(deps.now()).toISOString();
  const run: RunState = {
    runId,
    environment: deps.settings.environment,
    startedAt,
    dryRun: request.dryRun,
    pollIntervalSeconds: config.locks.pollIntervalSeconds,
    maxWaitSeconds: request.maxWaitSeconds ?? config.locks.maxWaitSeconds,
    targets: tables.map((table) => displayQualified(table.target)),
  };
  if (!request.dryRun) {
    // This run holds the lease, so whatever is in the staging schema or under runs/ was left
    // by a run that was killed: clear it before this run starts.
    const dropped = await dropStaleStaging(deps.aurora, []);
    const deleted = await deps.objects.deletePrefix(deps.settings.bucket, RUNS_PREFIX);
    if (dropped.length > 0 || deleted > 0) {
      deps.log.warn('cleared what an earlier, interrupted run left', {
        stagingTables: dropped.map((name) => displayQualified(name)),
        runFiles: deleted,
      });
    }
  }
  await new RunFiles(deps.objects, deps.settings.bucket, runId).writeSetup({
    runId,
    environment: run.environment,
    startedAt,
    dryRun: run.dryRun,
    maxWaitSeconds: run.maxWaitSeconds,
    fullRefresh: request.fullRefresh,
    config: runtimeConfigJson(config),
    targets: run.targets,
  });
  deps.log.info('run set up', { runId, tables: run.targets, dryRun: run.dryRun });
  return { run };
}

export async function installPipelineSchema(deps: PipelineDeps): Promise<void> {
  const outcome = await installSchema(deps.aurora);
  if (outcome.installed) {
    deps.log.info('installed the pipeline schema', {
      version: outcome.version,
      previousVersion: outcome.previousVersion,
      migrationsApplied: outcome.migrationsApplied,
    });
  }
}

export interface DryRunTable {
  readonly target: string;
  readonly source: string;
  readonly strategy: string;
  readonly liveTableExists: boolean;
  /**
   * For a table with `incremental`: whether the run would take it whole (`full`, by its
   * strategy) or as an increment, and why full; null for other tables.
   */
  readonly mode: 'full' | 'incremental' | null;
  readonly fullReason: string | null;
  /** The watermark an incremental run would start from (null: none, or not incremental). */
  readonly watermark: string | null;
  /** The locks the swap would take, per relation, in the mode the table would run in. */
  readonly locks: readonly { readonly relation: string; readonly mode: string }[];
  /** Sessions that would make the swap wait now. */
  readonly blockers: readonly ReturnType<typeof describeBlocker>[];
}

export interface DryRunSummary {
  readonly status: 'DRY_RUN';
  readonly runId: string;
  readonly wouldWait: boolean;
  readonly problems: readonly string[];
  readonly tables: readonly DryRunTable[];
}

/** Describes what the run would do; nothing is unloaded, created or swapped. */
export async function dryRun(state: unknown, deps: PipelineDeps): Promise<DryRunSummary> {
  const context = await loadRun(deps, parseStepInput(STEP_INPUTS.run, state).run);
  const existing = await deps.aurora.query<{ schema: string; name: string }>(
    `SELECT n.nspname::text AS schema, c.relname::text AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE (n.nspname::text, c.relname::text) IN
            (SELECT t->>'schema', t->>'name' FROM jsonb_array_elements(:targets::jsonb) t)`,
    { targets: JSON.stringify(context.tables.map((table) => table.target)) },
  );
  const tables = context.tables.map((table) => ({
    table,
    liveExists: existing.some((row) => sameQualifiedName(row, table.target)),
  }));
  const increments = await dryRunIncrements(deps, tables, context.setup.fullRefresh);
  // An increment is published under ROW EXCLUSIVE whatever the table's strategy.
  const publish = tables.map(
    ({ table }, index): PublishKind =>
      increments[index]?.mode === 'incremental' ? 'increment' : table.strategy,
  );
  const problems: string[] = [];
  try {
    await preflight(
      deps.aurora,
      context.tables.map((table, index) =>
        preflightTable(
          table,
          { schema: STAGING_SCHEMA, name: runScopedName(context.run.runId, table.target) },
          publish[index] === 'increment',
        ),
      ),
      { onMaxWait: context.config.locks.onMaxWait },
    );
  } catch (error) {
    if (!(error instanceof PreflightError)) throw error;
    problems.push(...error.problems);
  }
  // Staging tables do not exist before a run, so only the live side can have holders now.
  const locks = context.tables.map((table, index) => ({
    relation: table.target,
    mode: STRATEGY_LOCKS[publish[index]!].live,
    includeDependentViews: publish[index] === 'rename',
  }));
  const verdict = lockVerdict(await inspectLocks(deps.aurora, locks), {
    graceSeconds: context.config.locks.graceSeconds,
  });
  const blockers = verdict.safe ? [] : verdict.blockers;
  await context.files.deleteAll();
  await releaseRunLease(deps.aurora, context.run.environment, context.run.runId);
  return {
    status: 'DRY_RUN',
    runId: context.run.runId,
    wouldWait: blockers.length > 0,
    problems,
    tables: tables.map(({ table, liveExists }, index) => {
      const taken = STRATEGY_LOCKS[publish[index]!];
      const increment = increments[index];
      return {
        target: displayQualified(table.target),
        source: displayQualified(table.source),
        strategy: table.strategy,
        liveTableExists: liveExists,
        mode: increment?.mode ?? null,
        fullReason: increment?.fullReason ?? null,
        watermark: increment?.watermark ?? null,
        locks: [
          { relation: displayQualified(table.target), mode: taken.live },
          {
            relation: `${STAGING_SCHEMA}.${runScopedName(context.run.runId, table.target)}`,
            mode: taken.staging,
          },
          ...(taken.dependentViews
            ? [{ relation: 'each view on it', mode: taken.dependentViews }]
            : []),
        ],
        blockers: blockers
          .filter((blocker) => sameQualifiedName(blocker.holder.relation, table.target))
          .map((blocker) =>
            describeBlocker(blocker.holder, blocker.reason, context.config.locks.onMaxWait),
          ),
      };
    }),
  };
}
