/**
 * The execution input of a run started by hand (the schedule sends `{}`):
 * `{ "tables": ["public.orders"], "dryRun": true, "maxWaitSeconds": 600, "fullRefresh": true }`,
 * every key optional.
 */
import { ConfigError } from '../core/errors';

export interface RunRequest {
  /** Targets to sync, as configured; all configured tables when absent. */
  readonly tables?: readonly string[];
  /** Plan only: what would be swapped, the locks each step needs, who holds them now. */
  readonly dryRun: boolean;
  /** Overrides the configured locks.maxWaitSeconds for this run. */
  readonly maxWaitSeconds?: number;
  /** Incremental tables are taken whole this run (and their watermarks taken afresh). */
  readonly fullRefresh: boolean;
}

const KEYS = ['tables', 'dryRun', 'maxWaitSeconds', 'fullRefresh'];
/** A Standard execution runs up to a year, but a day of waiting for locks is already a problem. */
export const MAX_WAIT_SECONDS_LIMIT = 86_400;

export function parseRunRequest(input: unknown): RunRequest {
  if (input === null || input === undefined) return { dryRun: false, fullRefresh: false };
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(
      `the execution input must be a JSON object such as {"tables": ["public.orders"], "dryRun": true}, not ${JSON.stringify(input)}.`,
    );
  }
  const request = input as Record<string, unknown>;
  const unknown = Object.keys(request).filter((key) => !KEYS.includes(key));
  if (unknown.length > 0) {
    throw new ConfigError(
      `the execution input has unknown key(s) ${unknown.map((key) => JSON.stringify(key)).join(', ')}; allowed: ${KEYS.join(', ')}.`,
    );
  }
  const { tables, dryRun, maxWaitSeconds, fullRefresh } = request;
  if (
    tables !== undefined &&
    (!Array.isArray(tables) ||
      tables.length === 0 ||
      tables.some((table) => typeof table !== 'string'))
  ) {
    throw new ConfigError(
      `the execution input's "tables" must be a non-empty list of configured targets such as ["public.orders"], not ${JSON.stringify(tables)}.`,
    );
  }
  if (dryRun !== undefined && typeof dryRun !== 'boolean') {
    throw new ConfigError(
      `the execution input's "dryRun" must be true or false, not ${JSON.stringify(dryRun)}.`,
    );
  }
  if (fullRefresh !== undefined && typeof fullRefresh !== 'boolean') {
    throw new ConfigError(
      `the execution input's "fullRefresh" must be true or false, not ${JSON.stringify(fullRefresh)}.`,
    );
  }
  if (
    maxWaitSeconds !== undefined &&
    (typeof maxWaitSeconds !== 'number' ||
      !Number.isInteger(maxWaitSeconds) ||
      maxWaitSeconds < 0 ||
      maxWaitSeconds > MAX_WAIT_SECONDS_LIMIT)
  ) {
    throw new ConfigError(
      `the execution input's "maxWaitSeconds" must be a whole number of seconds from 0 to ${MAX_WAIT_SECONDS_LIMIT}, not ${JSON.stringify(maxWaitSeconds)}.`,
    );
  }
  return {
    ...(tables ? { tables: tables as string[] } : {}),
    dryRun: dryRun ?? false,
    ...(maxWaitSeconds !== undefined ? { maxWaitSeconds } : {}),
    fullRefresh: fullRefresh ?? false,
  };
}
