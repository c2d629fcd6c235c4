/**
 * The configuration of one environment (`config/<env>.json`), as a zod schema. Pure: the caller
 * reads the file and names it (`origin`), so every message starts with the file and the path of
 * the bad field (`config/dev.json: tables[1].target: ...`) and says what to do; each building
 * block of the schema (config-fields.ts) carries its message. The same schema generates the
 * JSON Schema editors check the files with (config/schema.json) and the README's
 * configuration reference (`npm run config:schema` writes both).
 *
 * Two readers, one format:
 * - `parseRuntimeConfig`: what a run needs (tables, locks, unload, retention). The local run
 *   uses it and ignores `aws`; the state machine carries it (`runtimeConfigJson`) and every
 *   step reads it back with this same function.
 * - `parseConfig`: the runtime part plus the `aws` section (config-aws.ts), checked too; the
 *   CDK app uses it and asks for the AWS part with `requireAwsSettings`.
 *
 * Unknown keys are refused everywhere: a misspelt option must not silently fall back to its
 * default. `$schema`, which points editors at the JSON Schema, is the one key allowed and
 * ignored.
 */
// A namespace import, not `{ z }`: through `z` every locale of zod is reachable, and esbuild
// would bundle them all into each Lambda (test/lambda-bundle.test.ts).
import * as z from 'zod';
import { type AwsSettings, awsSchema } from './config-aws';
import { CONFIG_DEFAULTS, CONFIG_LIMITS } from './config-defaults';
import { bounded, describe, flag, object, oneOf, parsedBy, parseWith } from './config-fields';
import { ConfigError } from './errors';
import {
  displayIdentifier,
  displayQualified,
  parseIdentifier,
  parseQualifiedName,
  type QualifiedName,
  sameQualifiedName,
} from './identifiers';
import { BLOCKER_CLASSES, NEVER_TERMINATED } from './locks/classes';
import { ADMIN_SCHEMA, RETIRED_SCHEMA, STAGING_SCHEMA } from './schema/admin';
import { ON_MAX_WAIT } from './swap/policy';
import { SWAP_STRATEGIES } from './swap/types';
import { INCREMENT_DELETES, INCREMENT_MODES, type SyncTable } from './transfer/types';

export type { AuroraSettings, AwsSettings, RedshiftSettings, ScheduleSettings } from './config-aws';
export { CONFIG_DEFAULTS, CONFIG_LIMITS } from './config-defaults';

/** Schemas the pipeline owns in Aurora: a target there would be dropped or retired by the pipeline itself. */
const RESERVED_SCHEMAS: readonly string[] = [ADMIN_SCHEMA, STAGING_SCHEMA, RETIRED_SCHEMA];
const TABLE_EXAMPLE = '{"source": "sales.orders", "target": "public.orders"}';

const tableName = parsedBy('"public.orders"', (name) => parseQualifiedName(name, 'the table'));

const incremental = object(
  {
    cursor: parsedBy('"updated_at"', (name) => parseIdentifier(name, 'the cursor column')).describe(
      'A column of source and target that grows with every change: integer types, `numeric`/`decimal`, `date`, `timestamp`, `timestamptz`.',
    ),
    mode: oneOf(
      INCREMENT_MODES,
      'is missing; say how the rows past the watermark are applied: "merge" (update by key, insert new keys) or "append" (insert them all).',
    ).describe(
      '`merge`: rows with cursor ≥ the watermark, updated by key (only changed rows are written) or inserted; needs a key as strategy `merge` does. `append`: rows with cursor > the watermark, all inserted; not with a `date` cursor (rows added after a run to the day of its watermark would never come).',
    ),
    deletes: oneOf(INCREMENT_DELETES)
      .default(CONFIG_DEFAULTS.incremental.deletes)
      .describe(
        "`ignore`: a row deleted from the source fails the run's whole-table check, and the next run is full. `reconcile`: every increment also unloads the source's keys and deletes the live rows whose key is gone; needs a key (`primaryKey`, allowed for it in mode `append` too, else the live table's primary key). See [what each costs](#incremental-sync).",
      ),
  },
  '{"cursor": "updated_at", "mode": "merge"}',
).describe(
  "Move only the rows whose cursor passed the last run's watermark (see [Incremental sync](#incremental-sync)); absent: every run is full.",
);

const primaryKey = z
  .array(
    parsedBy('"id"', (name) => parseIdentifier(name, 'the column')),
    { error: (issue) => `must be a list such as ["id"], not ${describe(issue.input)}.` },
  )
  .min(1, {
    error: "must name at least one column; leave it out to use the live table's primary key.",
    abort: true,
  })
  .superRefine((columns, context) => {
    columns.forEach((column, index) => {
      if (columns.indexOf(column) !== index) {
        context.addIssue({
          code: 'custom',
          path: [index],
          message: `the column ${displayIdentifier(column)} is named twice.`,
        });
      }
    });
  })
  .describe(
    "The key columns, where a key is used (strategy `merge`, incremental mode `merge`, incremental deletes `reconcile`); absent: the live table's primary key.",
  );

const table = object(
  {
    source: tableName.describe(
      'The Redshift table, `schema.table`; double quotes keep case and odd characters (`sales."Order Items"`). Redshift folds unquoted names to lower case unless `enable_case_sensitive_identifier` is on.',
    ),
    target: tableName
      .refine((name) => !RESERVED_SCHEMAS.includes(name.schema), {
        error: (issue) =>
          `the schema ${(issue.input as QualifiedName).schema} belongs to the pipeline itself (${RESERVED_SCHEMAS.join(', ')}); choose a target in one of your own schemas.`,
        abort: true,
      })
      .describe(
        "The live Aurora table, same syntax; each target once; not in the pipeline's own schemas.",
      ),
    strategy: oneOf(SWAP_STRATEGIES)
      .default(CONFIG_DEFAULTS.table.strategy)
      .describe(
        'How the new rows replace the live ones (see [Strategies](docs/design.md#strategies)).',
      ),
    primaryKey: primaryKey.optional(),
    allowEmpty: flag(CONFIG_DEFAULTS.table.allowEmpty).describe(
      'Whether an empty source may replace a non-empty live table.',
    ),
    incremental: incremental.optional(),
  },
  TABLE_EXAMPLE,
).superRefine((value, context) => {
  const usesKey =
    value.strategy === 'merge' ||
    value.incremental?.mode === 'merge' ||
    value.incremental?.deletes === 'reconcile';
  if (value.primaryKey && !usesKey) {
    context.addIssue({
      code: 'custom',
      path: ['primaryKey'],
      message: `only strategy "merge", incremental mode "merge" and incremental deletes "reconcile" use a key; remove primaryKey or set "strategy": "merge" (this table's strategy is "${value.strategy}").`,
    });
  }
});

const tables = z
  .array(table, {
    error: (issue) =>
      issue.input === undefined
        ? `is missing; list the tables to sync, e.g. [${TABLE_EXAMPLE}].`
        : `must be a list such as [${TABLE_EXAMPLE}], not ${describe(issue.input)}.`,
  })
  .min(1, { error: `is empty; list at least one table, e.g. [${TABLE_EXAMPLE}].`, abort: true })
  .superRefine((list, context) => {
    list.forEach((entry, index) => {
      const first = list.findIndex((other) => sameQualifiedName(other.target, entry.target));
      if (first !== index) {
        context.addIssue({
          code: 'custom',
          path: [index, 'target'],
          message: `${displayQualified(entry.target)} is already the target of tables[${first}]; each target may appear once.`,
        });
      }
    });
  })
  .describe('The tables to sync, each target once.');

const action = oneOf(ON_MAX_WAIT);
const perClass = object(
  Object.fromEntries(BLOCKER_CLASSES.map((kind) => [kind, action.optional()])) as Record<
    (typeof BLOCKER_CLASSES)[number],
    z.ZodOptional<typeof action>
  >,
  '{"idleInTransaction": "terminate", "activeQuery": "fail"}',
  (key) =>
    key === 'autovacuum'
      ? 'a plain autovacuum never holds the swap up: it gives way when the swap asks for its lock. One run to prevent wraparound is antiWraparoundVacuum, which is never terminated.'
      : undefined,
).superRefine((policy, context) => {
  for (const [kind, chosen] of Object.entries(policy)) {
    const never = NEVER_TERMINATED[kind as keyof typeof NEVER_TERMINATED];
    if (chosen === 'terminate' && never) {
      context.addIssue({
        code: 'custom',
        path: [kind],
        message: `${never}; only "fail" is allowed here.`,
      });
    }
  }
});

const seconds = (key: 'pollIntervalSeconds' | 'maxWaitSeconds') =>
  bounded(CONFIG_LIMITS[key], 'seconds', CONFIG_DEFAULTS.locks[key]);

const locks = object(
  {
    lockTimeoutMs: bounded(
      CONFIG_LIMITS.lockTimeoutMs,
      'milliseconds',
      CONFIG_DEFAULTS.locks.lockTimeoutMs,
    ).describe(
      "`lock_timeout` of every lock-taking statement, in ms: a reader queues behind the swap for at most this plus the swap's own hold (15 to 30 ms for `rename`).",
    ),
    pollIntervalSeconds: seconds('pollIntervalSeconds').describe(
      'How often to look at the locks again while blocked, in seconds.',
    ),
    maxWaitSeconds: seconds('maxWaitSeconds').describe(
      'How long to wait for blockers in all, in seconds; a hand-started run may override it.',
    ),
    onMaxWait: z
      .union([action, perClass], {
        error: (issue) =>
          Array.isArray(issue.input)
            ? `must be "fail", "terminate" or an object with one of them per class, such as {"idleInTransaction": "terminate"}, not ${describe(issue.input)}.`
            : `must be one of "fail", "terminate", not ${describe(issue.input)}.`,
      })
      .default(CONFIG_DEFAULTS.locks.onMaxWait)
      .describe(
        `When blockers outlast maxWaitSeconds: \`fail\` (live tables untouched) or \`terminate\` (end the blocking sessions), for every kind of blocker; or one of them per kind (${BLOCKER_CLASSES.map((kind) => `\`${kind}\``).join(', ')}), e.g. \`{"idleInTransaction": "terminate"}\`, a kind left out failing (see [below](#a-policy-per-kind-of-blocker)).`,
      ),
    graceSeconds: bounded(
      CONFIG_LIMITS.graceSeconds,
      'seconds',
      CONFIG_DEFAULTS.locks.graceSeconds,
      false,
    ).describe(
      'Conflicting lock holders younger than this many seconds do not make the swap wait.',
    ),
  },
  '{"lockTimeoutMs": 200, "maxWaitSeconds": 3600}',
)
  .default(CONFIG_DEFAULTS.locks)
  .describe('How the swap waits for its locks.');

const unload = object(
  {
    maxFileSizeMb: bounded(
      CONFIG_LIMITS.maxFileSizeMb,
      'MB',
      CONFIG_DEFAULTS.unload.maxFileSizeMb,
    ).describe(
      "UNLOAD's `MAXFILESIZE`, in MB: one file must import within one 45 s RDS Data API call.",
    ),
  },
  '{"maxFileSizeMb": 100}',
)
  .default(CONFIG_DEFAULTS.unload)
  .describe('How Redshift writes the files.');

const retention = object(
  {
    keepVersions: bounded(
      CONFIG_LIMITS.keepVersions,
      'versions',
      CONFIG_DEFAULTS.retention.keepVersions,
    ).describe('Retired versions of each `rename` table kept for rollback.'),
    runFilesDays: bounded(
      CONFIG_LIMITS.runFilesDays,
      'days',
      CONFIG_DEFAULTS.retention.runFilesDays,
    ).describe("Days until the bucket's lifecycle expires run files a run could not delete."),
  },
  '{"keepVersions": 2, "runFilesDays": 7}',
)
  .default(CONFIG_DEFAULTS.retention)
  .describe('What is kept after a run.');

const runtimeShape = {
  $schema: z.string().optional().describe('The JSON Schema this file follows, for editors.'),
  tables,
  locks,
  unload,
  retention,
};
const ROOT_EXAMPLE = `{"tables": [${TABLE_EXAMPLE}]}`;

/** The whole file. */
const configSchema = object({ ...runtimeShape, aws: awsSchema.optional() }, ROOT_EXAMPLE)
  .transform(({ $schema, ...config }) => config)
  .meta({
    title: 'redshift-aurora-sync configuration',
    description:
      "One environment of redshift-aurora-sync (config/<env>.json); see the README's Configuration section.",
    $comment:
      'Generated from lambdas/core/config.ts by npm run config:schema; do not edit by hand.',
  });

/**
 * The JSON Schema of config/*.json, for editors: what a file may hold, as the parser reads it
 * (the input side: defaults are optional). Checks no JSON Schema can express (identifiers as
 * PostgreSQL parses them, combinations of fields) are the parser's alone.
 */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input' });
}

/** The runtime part; the `aws` section may be there and is not looked at. */
const runtimeSchema = object(
  { ...runtimeShape, aws: z.unknown().optional() },
  ROOT_EXAMPLE,
).transform(({ $schema, aws, ...runtime }) => runtime);

/** What a run needs: the part of the configuration the state machine carries. */
export type RuntimeConfig = z.output<typeof runtimeSchema>;
export type SyncConfig = z.output<typeof configSchema>;
export type LockSettings = RuntimeConfig['locks'];
export type UnloadSettings = RuntimeConfig['unload'];
export type RetentionSettings = RuntimeConfig['retention'];

/** The whole file: the runtime part and, when present, the `aws` section. */
export function parseConfig(value: unknown, origin: string): SyncConfig {
  return parseWith(configSchema, value, origin);
}

/** What a run needs. An `aws` section may be present and is not looked at (the local run ignores it). */
export function parseRuntimeConfig(value: unknown, origin: string): RuntimeConfig {
  return parseWith(runtimeSchema, value, origin);
}

/** The `aws` section, for the CDK app; a file without one cannot be deployed. */
export function requireAwsSettings(config: SyncConfig, origin: string): AwsSettings {
  if (!config.aws) {
    throw new ConfigError(
      `${origin}: aws: is missing; a deployed environment needs its account, region, Redshift and Aurora settings (see config/example.json).`,
    );
  }
  return config.aws;
}

/**
 * The runtime part as plain JSON, every default written out and names as a person writes them,
 * so that `parseRuntimeConfig` reads it back to an equal config. The state machine carries it.
 */
export function runtimeConfigJson(config: RuntimeConfig): Record<string, unknown> {
  return {
    tables: config.tables.map((table) => ({
      source: displayQualified(table.source),
      target: displayQualified(table.target),
      strategy: table.strategy,
      ...(table.primaryKey ? { primaryKey: table.primaryKey.map(displayIdentifier) } : {}),
      allowEmpty: table.allowEmpty,
      ...(table.incremental
        ? {
            incremental: {
              cursor: displayIdentifier(table.incremental.cursor),
              mode: table.incremental.mode,
              deletes: table.incremental.deletes,
            },
          }
        : {}),
    })),
    locks: { ...config.locks },
    unload: { ...config.unload },
    retention: { ...config.retention },
  };
}

/**
 * The tables a run covers: all of them when `names` is absent, else the named targets, in the
 * configured order. An unknown or malformed name is refused by name, with the configured
 * targets listed, before anything runs.
 */
export function selectTables(
  config: RuntimeConfig,
  names: readonly string[] | undefined,
  origin: string,
): readonly SyncTable[] {
  if (names === undefined) return config.tables;
  const configured = config.tables.map((table) => displayQualified(table.target)).join(', ');
  if (names.length === 0) {
    throw new ConfigError(
      `${origin}: the table list is empty; name at least one configured target (${configured}) or leave the list out to sync them all.`,
    );
  }
  const wanted: QualifiedName[] = [];
  const problems: string[] = [];
  for (const name of names) {
    let parsed: QualifiedName;
    try {
      parsed = parseQualifiedName(name, 'the table');
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      // The parser's message already quotes the name and shows how to write one.
      problems.push(error.message.replace(/\.$/, ''));
      continue;
    }
    if (wanted.some((other) => sameQualifiedName(other, parsed))) {
      problems.push(`${displayQualified(parsed)} is named twice`);
    } else if (!config.tables.some((table) => sameQualifiedName(table.target, parsed))) {
      problems.push(`${displayQualified(parsed)} is not a configured target`);
    }
    wanted.push(parsed);
  }
  if (problems.length > 0) {
    throw new ConfigError(`${origin}: ${problems.join('; ')}. Configured targets: ${configured}.`);
  }
  return config.tables.filter((table) =>
    wanted.some((name) => sameQualifiedName(name, table.target)),
  );
}
