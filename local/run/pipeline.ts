/**
 * A local run: the state machine definition `cdk synth` produces, executed by
 * aws-local-stepfunctions, each Task state bound to the real step code with local ports.
 * Shows progress as it goes and returns the run summary, as the execution output would be.
 */
import { randomUUID } from 'node:crypto';
import type { RuntimeConfig } from '../../lambdas/core/config';
import type { RunRequest } from '../../lambdas/pipeline/request';
import { blockerLine, type LocksState, type TerminatedState } from '../../lambdas/pipeline/state';
import { PIPELINE_STEPS, type PipelineFunctionName } from '../../lambdas/pipeline/steps';
import type { DryRunSummary } from '../../lambdas/pipeline/steps/prepare';
import type { RunSummary } from '../../lambdas/pipeline/summary';
import { STATE } from '../../lib/pipeline-definition';
import { runDefinition, synthesizeDefinition } from './definition';
import type { LocalDeps } from './deps';

export interface LocalRunOptions {
  readonly config: RuntimeConfig;
  readonly request?: Partial<RunRequest>;
  readonly deps: LocalDeps;
  /** One line per thing worth showing: states entered, lock waits, the swap. */
  readonly onProgress?: (line: string) => void;
  /** How long "Wait for the unload" waits locally (the emulator is quick). Default 100 ms. */
  readonly unloadPollMs?: number;
}

export type LocalRunSummary = RunSummary | DryRunSummary;

/** Shows an outcome of a step worth a line of its own. */
function describeOutput(handler: PipelineFunctionName, output: unknown): string | null {
  if (handler === 'check-locks') {
    const locks = output as LocksState;
    const blockedBy = (blockers: LocksState['blockers']) =>
      blockers.map((blocker) => `\n    - ${blockerLine(blocker)}`).join('');
    if (locks.decision === 'wait') {
      return `  waiting ${Math.round(locks.waitedSeconds)} s for locks; blocked by:${blockedBy(locks.blockers)}`;
    }
    if (locks.decision === 'terminate') {
      return `  waited ${Math.round(locks.waitedSeconds)} s, the most allowed: ending the blocking sessions${blockedBy(locks.blockers)}`;
    }
    return locks.blockersSeen.length > 0
      ? `  waited ${Math.round(locks.waitedSeconds)} s for locks; blocked by:${blockedBy(locks.blockersSeen)}`
      : '  no long-running lock holders';
  }
  if (handler === 'terminate-blockers') {
    const { terminated } = output as TerminatedState;
    return terminated.length > 0
      ? `  onMaxWait ended the blocking sessions:${terminated
          .map(
            (record) =>
              `\n    - ${record.pid === null ? `prepared transaction ${record.gid}` : `pid ${record.pid}`} (${record.blockerClass}): ${record.outcome}${record.reason ? `, ${record.reason}` : ''}`,
          )
          .join('')}`
      : null;
  }
  if (handler === 'swap-tables') {
    const swap = output as { swapped: boolean; lockHeldMs?: number; reason?: string };
    return swap.swapped
      ? `  swapped; exclusive locks held ${swap.lockHeldMs} ms`
      : `  swap attempt was busy (${swap.reason}); nothing changed, waiting again`;
  }
  if (handler === 'check-staging') {
    const loaded = output as { target: string; rows: number };
    return `  ${loaded.target}: ${loaded.rows} rows staged, figures match Redshift's`;
  }
  return null;
}

export async function runLocalPipeline(options: LocalRunOptions): Promise<LocalRunSummary> {
  const { deps } = options;
  const progress = options.onProgress ?? (() => {});
  const synthesized = synthesizeDefinition(options.config);
  const runId = `local-${new Date()
    .toISOString()
    .replace(/[-:.TZ]/g, '')
    .slice(0, 14)}-${randomUUID().slice(0, 8)}`;
  let failure: RunSummary | null = null;
  const handlers = Object.fromEntries(
    (Object.keys(PIPELINE_STEPS) as PipelineFunctionName[]).map((handler) => [
      handler,
      async (input: unknown) => {
        const output = await PIPELINE_STEPS[handler](input, deps);
        if (handler === 'fail-run') failure = (output as { summary: RunSummary }).summary;
        const line = describeOutput(handler, output);
        if (line) progress(line);
        return output;
      },
    ]),
  );
  await deps.runs.register(runId, Date.now());
  try {
    const outcome = await runDefinition(synthesized, handlers, options.request ?? {}, {
      executionName: runId,
      waitTimeOverrides: { [STATE.waitForUnload]: options.unloadPollMs ?? 100 },
      onEvent: (event) => {
        // Top-level states only: the Map iterations' own states would repeat per table and file.
        if (event.type === 'StateEntered' && event.index === undefined) progress(event.state.name);
      },
    });
    if (outcome.status === 'SUCCEEDED') return outcome.output as LocalRunSummary;
    if (failure) return failure;
    throw new Error(`the run failed before it could clean up: ${outcome.error}: ${outcome.cause}`);
  } finally {
    await deps.runs.unregister(runId);
  }
}
