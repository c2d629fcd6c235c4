/**
 * The execution input of a run started by hand (the schedule sends `{}`):
 * `{ "tables": ["public.orders"], "dryRun": true, "maxWaitSeconds": 600, "fullRefresh": true }`,
 * every key optional, unknown keys refused (a misspelt key must not start a full run). Parsed
 * with the configuration's building blocks, so its messages read as the configuration's do.
 */
import * as z from 'zod';
import { CONFIG_LIMITS } from '../core/config-defaults';
import { describe, flag, object, parseWith, text } from '../core/config-fields';

const { min, max } = CONFIG_LIMITS.maxWaitSeconds;
const seconds = (issue: { input?: unknown }) =>
  `must be a whole number of seconds from ${min} to ${max}, not ${describe(issue.input)}.`;
const targets = (issue: { input?: unknown }) =>
  `must be a non-empty list of configured targets such as ["public.orders"], not ${describe(issue.input)}.`;

const runRequest = object(
  {
    /** Targets to sync, as configured; all configured tables when absent. */
    tables: z
      .array(text('"public.orders"'), { error: targets })
      .min(1, { error: targets })
      .optional(),
    /** Plan only: what would be swapped, the locks each step needs, who holds them now. */
    dryRun: flag(false),
    /** Overrides the configured locks.maxWaitSeconds for this run. */
    maxWaitSeconds: z
      .int({ error: seconds })
      .min(min, { error: seconds })
      .max(max, { error: seconds })
      .optional(),
    /** Incremental tables are taken whole this run (and their watermarks taken afresh). */
    fullRefresh: flag(false),
  },
  '{"tables": ["public.orders"], "dryRun": true}',
);
export type RunRequest = z.output<typeof runRequest>;

export function parseRunRequest(input: unknown): RunRequest {
  return parseWith(runRequest, input ?? {}, 'the execution input');
}
