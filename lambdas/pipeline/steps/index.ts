/**
 * Every pipeline step by the name of its Lambda handler (lambdas/handlers/<name>.ts): the
 * table the local run binds the state machine's Task states with.
 */
import type { PipelineDeps } from '../deps';
import { failRun, finishRun } from './finish';
import { checkStaging, createStaging, importFiles } from './load';
import { checkLocks, swapTables, terminateBlockers } from './locks';
import { dryRun, prepareRun } from './prepare';
import { checkUnload, startUnload } from './unload';

export type StepFunction = (state: unknown, deps: PipelineDeps) => Promise<unknown>;

export const PIPELINE_STEPS = {
  'prepare-run': prepareRun,
  'dry-run': dryRun,
  'start-unload': startUnload,
  'check-unload': checkUnload,
  'create-staging': createStaging,
  'import-file': importFiles,
  'check-staging': checkStaging,
  'check-locks': checkLocks,
  'terminate-blockers': terminateBlockers,
  'swap-tables': swapTables,
  'finish-run': finishRun,
  'fail-run': failRun,
} as const satisfies Record<string, StepFunction>;

/** The Lambda functions' names: the same list as PIPELINE_FUNCTIONS in lib/function-access.ts. */
export type PipelineFunctionName = keyof typeof PIPELINE_STEPS;
