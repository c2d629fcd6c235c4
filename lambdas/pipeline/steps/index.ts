/**
 * Every pipeline step by the name of its Lambda handler (lambdas/handlers/<name>.ts): the
 * table the local run binds the state machine's Task states with.
 */
import type { PipelineDeps } from '../deps';
import { failRun, finishRun } from './finish';
import { checkStaging, createStaging, importFiles } from './load';
import { checkLocks, endBlockers, swapTables } from './locks';
import { describeRun, prepareRun } from './prepare';
import { checkUnload, startUnload } from './unload';

export type StepFunction = (state: unknown, deps: PipelineDeps) => Promise<unknown>;

export const PIPELINE_STEPS = {
  'prepare-run': prepareRun,
  'dry-run': describeRun,
  'start-unload': startUnload,
  'check-unload': checkUnload,
  'create-staging': createStaging,
  'import-file': importFiles,
  'check-staging': checkStaging,
  'check-locks': checkLocks,
  'terminate-blockers': endBlockers,
  'swap-tables': swapTables,
  'finish-run': finishRun,
  'fail-run': failRun,
} as const satisfies Record<string, StepFunction>;

export type HandlerName = keyof typeof PIPELINE_STEPS;
