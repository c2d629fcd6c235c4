/**
 * The one place the configuration's defaults and ranges live: the schema (config.ts,
 * config-aws.ts) applies them, the CDK app and the operator tools read them, and the README's
 * configuration reference cites them.
 */
import { DEFAULT_GRACE_SECONDS } from './locks/verdict';
import { DEFAULT_LOCK_TIMEOUT_MS, LOCK_TIMEOUT_MS_LIMITS } from './swap/plan';
import { DEFAULT_WAIT_POLICY } from './swap/policy';

export const CONFIG_DEFAULTS = {
  table: { strategy: 'rename', allowEmpty: false },
  incremental: { deletes: 'ignore' },
  locks: {
    lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS,
    pollIntervalSeconds: DEFAULT_WAIT_POLICY.pollIntervalSeconds,
    maxWaitSeconds: DEFAULT_WAIT_POLICY.maxWaitSeconds,
    onMaxWait: DEFAULT_WAIT_POLICY.onMaxWait,
    graceSeconds: DEFAULT_GRACE_SECONDS,
  },
  unload: { maxFileSizeMb: 100 },
  retention: { keepVersions: 2, runFilesDays: 7 },
  schedule: { expression: 'cron(0 3 * * ? *)', timeZone: 'UTC', enabled: true },
} as const;

/** The range of each bounded number, shown in the messages and written into the JSON Schema. */
export const CONFIG_LIMITS = {
  lockTimeoutMs: LOCK_TIMEOUT_MS_LIMITS,
  pollIntervalSeconds: { min: 1, max: 300 },
  /** A day of waiting for locks is already an incident; the execution times out at 24 h. */
  maxWaitSeconds: { min: 0, max: 86_400 },
  graceSeconds: { min: 0, max: 600 },
  /** UNLOAD's MAXFILESIZE bounds (5 MB to 6.2 GB). */
  maxFileSizeMb: { min: 5, max: 6000 },
  keepVersions: { min: 0, max: 100 },
  runFilesDays: { min: 1, max: 3650 },
} as const;
