/**
 * The configuration of one environment (`config/<env>.json`), checked field by field. Pure: the
 * caller reads the file and names it (`origin`), so every message starts with the file and the
 * path of the bad field (`config/dev.json: tables[1].target: ...`) and says what to do.
 *
 * Two readers, one format:
 * - `parseRuntimeConfig`: what a run needs (tables, locks, unload, retention). The local run
 *   uses it and ignores `aws`; the state machine carries it (`runtimeConfigJson`) and every
 *   step reads it back with this same function.
 * - `parseConfig`: the runtime part plus the `aws` section, checked too; the CDK app uses it
 *   and asks for the AWS part with `requireAwsSettings`.
 *
 * Unknown keys are refused everywhere: a misspelt option must not silently fall back to its
 * default.
 *
 * Longer than 400 lines because every field is checked, and its message written, by hand; the
 * move to a schema library (the schema-checked config issue) replaces most of it.
 */
import { ConfigError } from './errors';
import {
  displayIdentifier,
  displayQualified,
  parseIdentifier,
  parseQualifiedName,
  type QualifiedName,
  sameQualifiedName,
} from './identifiers';
import { BLOCKER_CLASSES, type BlockerClass, NEVER_TERMINATED } from './locks/classes';
import { DEFAULT_GRACE_SECONDS } from './locks/verdict';
import { ADMIN_SCHEMA, RETIRED_SCHEMA, STAGING_SCHEMA } from './schema/admin';
import { DEFAULT_LOCK_TIMEOUT_MS, validateLockTimeoutMs } from './swap/plan';
import { DEFAULT_WAIT_POLICY, type OnMaxWait, type OnMaxWaitSetting } from './swap/policy';
import { SWAP_STRATEGIES, type SwapStrategy } from './swap/types';
import {
  INCREMENT_DELETES,
  INCREMENT_MODES,
  type IncrementalSettings,
  type IncrementMode,
  type SyncTable,
} from './transfer/types';

/** The one place defaults live; the README's configuration reference cites it. */
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
} as const satisfies {
  table: Pick<SyncTable, 'strategy' | 'allowEmpty'>;
  incremental: Pick<IncrementalSettings, 'deletes'>;
  locks: LockSettings;
  unload: UnloadSettings;
  retention: RetentionSettings;
  schedule: ScheduleSettings;
};

/** The range of each bounded number, shown in the messages. */
export const CONFIG_LIMITS = {
  pollIntervalSeconds: { min: 1, max: 300 },
  /** A day of waiting for locks is already an incident; the execution times out at 24 h. */
  maxWaitSeconds: { min: 0, max: 86_400 },
  graceSeconds: { min: 0, max: 600 },
  /** UNLOAD's MAXFILESIZE bounds (5 MB to 6.2 GB). */
  maxFileSizeMb: { min: 5, max: 6000 },
  keepVersions: { min: 0, max: 100 },
  runFilesDays: { min: 1, max: 3650 },
} as const;

/** `locks`: how the swap waits for its locks. */
export interface LockSettings {
  /** `lock_timeout` of every lock-taking statement, in ms (10 to 60000). Default 50: a reader queues behind the swap for at most this long plus the swap's own hold. */
  readonly lockTimeoutMs: number;
  /** How often to look at the locks again while blocked, in whole seconds (1 to 300). Default 1. */
  readonly pollIntervalSeconds: number;
  /** How long to wait for blockers in all, in whole seconds (0 to 86400). Default 3600. A hand-started run may override it. */
  readonly maxWaitSeconds: number;
  /**
   * When blockers outlast maxWaitSeconds: `fail` (default; live tables untouched) or `terminate`
   * (end the blocking sessions), for every class of blocker that can be ended; or one of them per
   * class (`BLOCKER_CLASSES`), e.g. `{"idleInTransaction": "terminate"}`, a class left out
   * failing. `antiWraparoundVacuum` and `preparedTransaction` always fail. The run ends blockers
   * only when it ends them all; when one's class fails, nobody is ended.
   */
  readonly onMaxWait: OnMaxWaitSetting;
  /** Conflicting lock holders younger than this many seconds (0 to 600) do not make the swap wait. Default 2. */
  readonly graceSeconds: number;
}

/** `unload`: how Redshift writes the files. */
export interface UnloadSettings {
  /** UNLOAD's MAXFILESIZE in MB (5 to 6000). Default 100: one file must import within one 45 s RDS Data API call. */
  readonly maxFileSizeMb: number;
}

/** `retention`: what is kept after a run. */
export interface RetentionSettings {
  /** Retired versions of each `rename` table kept for rollback (0 to 100). Default 2. */
  readonly keepVersions: number;
  /** Days the bucket keeps a run's files (1 to 3650). Default 7. */
  readonly runFilesDays: number;
}

/** What a run needs: the part of the configuration the state machine carries. */
export interface RuntimeConfig {
  /**
   * The tables to sync, each target once. Per table: `source` and `target` as `schema.table`
   * (double quotes keep case and odd characters: `sales."Order Items"`), `strategy`
   * (`rename` default, `truncate`, `merge`), `primaryKey` (`merge` only: key columns; the live
   * table's primary key when absent), `allowEmpty` (default false: an empty source may not
   * replace a non-empty live table), `incremental` (`{"cursor": "updated_at", "mode":
   * "merge" | "append", "deletes": "ignore" | "reconcile"}`: move only the rows whose cursor
   * passed the last run's watermark; `merge` and `reconcile` need a key, as strategy `merge`
   * does).
   */
  readonly tables: readonly SyncTable[];
  readonly locks: LockSettings;
  readonly unload: UnloadSettings;
  readonly retention: RetentionSettings;
}

/** How the Lambdas reach Redshift through the Redshift Data API. */
export type RedshiftSettings =
  | {
      /** A provisioned cluster, signing in with a Secrets Manager secret. */
      readonly clusterIdentifier: string;
      readonly database: string;
      readonly secretArn: string;
    }
  | {
      /** A provisioned cluster, signing in as a database user (redshift:GetClusterCredentials). */
      readonly clusterIdentifier: string;
      readonly database: string;
      readonly dbUser: string;
    }
  | {
      /** Redshift Serverless; with a secret, or else with the caller's IAM identity (redshift-serverless:GetCredentials). */
      readonly workgroupName: string;
      /**
       * The workgroup's id (a UUID, shown in the console). Optional: IAM names workgroups by id,
       * so with it the grants name this workgroup; without it they cover every workgroup of
       * the account in the region.
       */
      readonly workgroupId?: string;
      readonly database: string;
      readonly secretArn?: string;
    };

export interface AuroraSettings {
  /** `arn:aws:rds:<region>:<account>:cluster:<id>`, in the stack's region (the RDS Data API is regional). */
  readonly clusterArn: string;
  /** The Secrets Manager secret the RDS Data API signs in with. */
  readonly secretArn: string;
  /** The database holding the live tables (a PostgreSQL name). */
  readonly database: string;
}

/** `aws.schedule`: when EventBridge Scheduler starts a run. */
export interface ScheduleSettings {
  /** `cron(min hour day-of-month month day-of-week year)`, `rate(n unit)` or `at(...)`. Default `cron(0 3 * * ? *)`. */
  readonly expression: string;
  /** An IANA time zone such as `Europe/Berlin`; cron follows its daylight saving time. Default `UTC`. */
  readonly timeZone: string;
  /** false deploys the schedule switched off (runs only by hand). Default true. */
  readonly enabled: boolean;
}

/** `aws`: where the stack deploys and what it connects to. Needed by the CDK app only. */
export interface AwsSettings {
  /** The 12-digit account the stack deploys to. */
  readonly account: string;
  /** The region the stack deploys to, e.g. `eu-west-1`. */
  readonly region: string;
  readonly redshift: RedshiftSettings;
  /**
   * An IAM role already attached to the Redshift cluster that UNLOAD runs as. Optional: the
   * stack creates one when absent, and it must then be attached to the cluster.
   */
  readonly unloadRoleArn?: string;
  readonly aurora: AuroraSettings;
  readonly schedule: ScheduleSettings;
  /** Who is e-mailed when a run fails or data gets stale. Optional: without it, subscribe to the topic yourself. */
  readonly alarmEmail?: string;
}

export interface SyncConfig extends RuntimeConfig {
  /** Absent in a file meant for local runs only. */
  readonly aws?: AwsSettings;
}

const TOP_KEYS = ['tables', 'locks', 'unload', 'retention', 'aws'] as const;
const TABLE_KEYS = [
  'source',
  'target',
  'strategy',
  'primaryKey',
  'allowEmpty',
  'incremental',
] as const;
const INCREMENTAL_KEYS = ['cursor', 'mode', 'deletes'] as const;
const INCREMENTAL_EXAMPLE = '{"cursor": "updated_at", "mode": "merge"}';
const LOCK_KEYS = [
  'lockTimeoutMs',
  'pollIntervalSeconds',
  'maxWaitSeconds',
  'onMaxWait',
  'graceSeconds',
] as const;
const UNLOAD_KEYS = ['maxFileSizeMb'] as const;
const RETENTION_KEYS = ['keepVersions', 'runFilesDays'] as const;
const AWS_KEYS = [
  'account',
  'region',
  'redshift',
  'unloadRoleArn',
  'aurora',
  'schedule',
  'alarmEmail',
] as const;
const REDSHIFT_KEYS = [
  'clusterIdentifier',
  'workgroupName',
  'workgroupId',
  'database',
  'secretArn',
  'dbUser',
] as const;
const AURORA_KEYS = ['clusterArn', 'secretArn', 'database'] as const;
const SCHEDULE_KEYS = ['expression', 'timeZone', 'enabled'] as const;
const ON_MAX_WAIT: readonly OnMaxWait[] = ['fail', 'terminate'];
/** Schemas the pipeline owns in Aurora: a target there would be dropped or retired by the pipeline itself. */
const RESERVED_SCHEMAS = [ADMIN_SCHEMA, STAGING_SCHEMA, RETIRED_SCHEMA];

/** A value at a path in one file; everything that goes wrong is reported against both. */
class Field {
  constructor(
    readonly origin: string,
    readonly path: string,
    readonly value: unknown,
  ) {}

  fail(message: string): never {
    throw new ConfigError(`${this.origin}: ${this.path === '' ? '' : `${this.path}: `}${message}`);
  }

  child(key: string | number): Field {
    const path =
      typeof key === 'number' ? `${this.path}[${key}]` : this.path ? `${this.path}.${key}` : key;
    const value =
      typeof key === 'number'
        ? (this.value as unknown[])[key]
        : (this.value as Record<string, unknown>)[key];
    return new Field(this.origin, path, value);
  }

  get present(): boolean {
    return this.value !== undefined;
  }

  /** An object with only `allowed` keys. */
  object(allowed: readonly string[], example: string): this {
    if (typeof this.value !== 'object' || this.value === null || Array.isArray(this.value)) {
      this.fail(`must be a JSON object such as ${example}, not ${describe(this.value)}.`);
    }
    for (const key of Object.keys(this.value)) {
      if (!allowed.includes(key)) {
        const suggestion = closest(key, allowed);
        this.child(key).fail(
          `unknown key${suggestion ? `; did you mean "${suggestion}"?` : '.'} Allowed here: ${allowed.join(', ')}.`,
        );
      }
    }
    return this;
  }

  array(example: string): Field[] {
    if (!Array.isArray(this.value)) {
      this.fail(`must be a list such as ${example}, not ${describe(this.value)}.`);
    }
    return this.value.map((_, index) => this.child(index));
  }

  string(example: string): string {
    if (typeof this.value !== 'string' || this.value.trim() === '') {
      this.fail(`must be a non-empty string such as ${example}, not ${describe(this.value)}.`);
    }
    return this.value;
  }

  /** A string matching `pattern`; `shape` says in words what is expected. */
  matching(pattern: RegExp, shape: string): string {
    const text = this.string(shape);
    if (!pattern.test(text)) this.fail(`${JSON.stringify(text)} is not ${shape}.`);
    return text;
  }

  boolean(fallback: boolean): boolean {
    if (!this.present) return fallback;
    if (typeof this.value !== 'boolean') {
      this.fail(`must be true or false, not ${describe(this.value)}.`);
    }
    return this.value;
  }

  oneOf<T extends string>(choices: readonly T[], fallback: T): T {
    if (!this.present) return fallback;
    if (typeof this.value !== 'string' || !choices.includes(this.value as T)) {
      this.fail(
        `must be one of ${choices.map((choice) => `"${choice}"`).join(', ')}, not ${describe(this.value)}.`,
      );
    }
    return this.value as T;
  }

  number(
    fallback: number,
    limits: { readonly min: number; readonly max: number },
    unit: string,
    whole = true,
  ): number {
    if (!this.present) return fallback;
    const value = this.value;
    if (
      typeof value !== 'number' ||
      !Number.isFinite(value) ||
      (whole && !Number.isInteger(value)) ||
      value < limits.min ||
      value > limits.max
    ) {
      this.fail(
        `must be a ${whole ? 'whole ' : ''}number of ${unit} from ${limits.min} to ${limits.max} (default ${fallback}), not ${describe(value)}.`,
      );
    }
    return value;
  }

  /** Runs a check from another module that throws ConfigError, and puts the file and path in front of its message. */
  within<T>(check: () => T): T {
    try {
      return check();
    } catch (error) {
      if (error instanceof ConfigError) this.fail(error.message);
      throw error;
    }
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** The allowed key a typo most likely meant (at most 2 edits, or the same word in another case). */
function closest(key: string, allowed: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of allowed) {
    const distance =
      candidate.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, candidate);
    if (distance <= 2 && (!best || distance < best.distance)) best = { key: candidate, distance };
  }
  return best?.key;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

const TABLE_EXAMPLE = '{"source": "sales.orders", "target": "public.orders"}';

function parseTable(field: Field): SyncTable {
  field.object(TABLE_KEYS, TABLE_EXAMPLE);
  const source = parseTableName(field.child('source'));
  const target = parseTableName(field.child('target'));
  if (RESERVED_SCHEMAS.includes(target.schema)) {
    field
      .child('target')
      .fail(
        `the schema ${target.schema} belongs to the pipeline itself (${RESERVED_SCHEMAS.join(', ')}); choose a target in one of your own schemas.`,
      );
  }
  const strategy = field
    .child('strategy')
    .oneOf<SwapStrategy>(SWAP_STRATEGIES, CONFIG_DEFAULTS.table.strategy);
  const incrementalField = field.child('incremental');
  const incremental = incrementalField.present ? parseIncremental(incrementalField) : undefined;
  const keyField = field.child('primaryKey');
  let primaryKey: string[] | undefined;
  if (keyField.present) {
    if (
      strategy !== 'merge' &&
      incremental?.mode !== 'merge' &&
      incremental?.deletes !== 'reconcile'
    ) {
      keyField.fail(
        `only strategy "merge", incremental mode "merge" and incremental deletes "reconcile" use a key; remove primaryKey or set "strategy": "merge" (this table's strategy is "${strategy}").`,
      );
    }
    const columns = keyField.array('["id"]');
    if (columns.length === 0) {
      keyField.fail(
        "must name at least one column; leave it out to use the live table's primary key.",
      );
    }
    primaryKey = columns.map((column) =>
      column.within(() => parseIdentifier(column.string('"id"'), 'the column')),
    );
    primaryKey.forEach((column, index) => {
      if (primaryKey!.indexOf(column) !== index) {
        columns[index]!.fail(`the column ${displayIdentifier(column)} is named twice.`);
      }
    });
  }
  return {
    source,
    target,
    strategy,
    ...(primaryKey ? { primaryKey } : {}),
    allowEmpty: field.child('allowEmpty').boolean(CONFIG_DEFAULTS.table.allowEmpty),
    ...(incremental ? { incremental } : {}),
  };
}

/** `incremental`: the cursor is checked against the source's columns when a run starts. */
function parseIncremental(field: Field): IncrementalSettings {
  field.object(INCREMENTAL_KEYS, INCREMENTAL_EXAMPLE);
  const cursorField = field.child('cursor');
  const cursorText = cursorField.string('"updated_at"');
  const cursor = cursorField.within(() => parseIdentifier(cursorText, 'the cursor column'));
  const modeField = field.child('mode');
  if (!modeField.present) {
    modeField.fail(
      `is missing; say how the rows past the watermark are applied: "merge" (update by key, insert new keys) or "append" (insert them all).`,
    );
  }
  return {
    cursor,
    mode: modeField.oneOf<IncrementMode>(INCREMENT_MODES, 'merge'),
    deletes: field.child('deletes').oneOf(INCREMENT_DELETES, CONFIG_DEFAULTS.incremental.deletes),
  };
}

function parseTableName(field: Field): QualifiedName {
  const text = field.string('"public.orders"');
  return field.within(() => parseQualifiedName(text, 'the table'));
}

function parseTables(field: Field): SyncTable[] {
  if (!field.present) {
    field.fail(`is missing; list the tables to sync, e.g. [${TABLE_EXAMPLE}].`);
  }
  const items = field.array(`[${TABLE_EXAMPLE}]`);
  if (items.length === 0) field.fail(`is empty; list at least one table, e.g. [${TABLE_EXAMPLE}].`);
  const tables = items.map(parseTable);
  tables.forEach((table, index) => {
    const first = tables.findIndex((other) => sameQualifiedName(other.target, table.target));
    if (first !== index) {
      items[index]!.child('target').fail(
        `${displayQualified(table.target)} is already the target of tables[${first}]; each target may appear once.`,
      );
    }
  });
  return tables;
}

function parseLocks(field: Field): LockSettings {
  const defaults = CONFIG_DEFAULTS.locks;
  if (!field.present) return defaults;
  field.object(LOCK_KEYS, '{"lockTimeoutMs": 200, "maxWaitSeconds": 3600}');
  const lockTimeout = field.child('lockTimeoutMs');
  return {
    lockTimeoutMs: lockTimeout.present
      ? lockTimeout.within(() => validateLockTimeoutMs(lockTimeout.value as number, 'it'))
      : defaults.lockTimeoutMs,
    pollIntervalSeconds: field
      .child('pollIntervalSeconds')
      .number(defaults.pollIntervalSeconds, CONFIG_LIMITS.pollIntervalSeconds, 'seconds'),
    maxWaitSeconds: field
      .child('maxWaitSeconds')
      .number(defaults.maxWaitSeconds, CONFIG_LIMITS.maxWaitSeconds, 'seconds'),
    onMaxWait: parseOnMaxWait(field.child('onMaxWait'), defaults.onMaxWait),
    graceSeconds: field
      .child('graceSeconds')
      .number(defaults.graceSeconds, CONFIG_LIMITS.graceSeconds, 'seconds', false),
  };
}

/** `"fail"`, `"terminate"`, or `{"<class>": "fail" | "terminate", ...}`, kept as written. */
function parseOnMaxWait(field: Field, fallback: OnMaxWait): OnMaxWaitSetting {
  if (typeof field.value !== 'object' || field.value === null) {
    return field.oneOf(ON_MAX_WAIT, fallback);
  }
  if (Array.isArray(field.value)) {
    field.fail(
      `must be "fail", "terminate" or an object with one of them per class, such as {"idleInTransaction": "terminate"}, not ${describe(field.value)}.`,
    );
  }
  if (Object.hasOwn(field.value, 'autovacuum')) {
    field
      .child('autovacuum')
      .fail(
        'a plain autovacuum never holds the swap up: it gives way when the swap asks for its lock. One run to prevent wraparound is antiWraparoundVacuum, which is never terminated.',
      );
  }
  field.object(BLOCKER_CLASSES, '{"idleInTransaction": "terminate", "activeQuery": "fail"}');
  const policy: Partial<Record<BlockerClass, OnMaxWait>> = {};
  for (const kind of BLOCKER_CLASSES) {
    const entry = field.child(kind);
    if (!entry.present) continue;
    const action = entry.oneOf(ON_MAX_WAIT, 'fail');
    const never = NEVER_TERMINATED[kind];
    if (action === 'terminate' && never) entry.fail(`${never}; only "fail" is allowed here.`);
    policy[kind] = action;
  }
  return policy;
}

function parseUnload(field: Field): UnloadSettings {
  const defaults = CONFIG_DEFAULTS.unload;
  if (!field.present) return defaults;
  field.object(UNLOAD_KEYS, '{"maxFileSizeMb": 100}');
  return {
    maxFileSizeMb: field
      .child('maxFileSizeMb')
      .number(defaults.maxFileSizeMb, CONFIG_LIMITS.maxFileSizeMb, 'MB'),
  };
}

function parseRetention(field: Field): RetentionSettings {
  const defaults = CONFIG_DEFAULTS.retention;
  if (!field.present) return defaults;
  field.object(RETENTION_KEYS, '{"keepVersions": 2, "runFilesDays": 7}');
  return {
    keepVersions: field
      .child('keepVersions')
      .number(defaults.keepVersions, CONFIG_LIMITS.keepVersions, 'versions'),
    runFilesDays: field
      .child('runFilesDays')
      .number(defaults.runFilesDays, CONFIG_LIMITS.runFilesDays, 'days'),
  };
}

const ACCOUNT = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
const PARTITION = 'aws(-[a-z]+)*';
const SECRET_ARN = new RegExp(
  `^arn:${PARTITION}:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+$`,
);
const CLUSTER_ARN = new RegExp(
  `^arn:${PARTITION}:rds:([a-z0-9-]+):\\d{12}:cluster:[a-z][a-z0-9-]*$`,
);
const ROLE_ARN = new RegExp(`^arn:${PARTITION}:iam::\\d{12}:role/[A-Za-z0-9/_+=,.@-]+$`);
/** Redshift cluster identifiers: lower-case letters, digits and hyphens, starting with a letter. */
const CLUSTER_IDENTIFIER = /^[a-z][a-z0-9-]{0,62}$/;
const WORKGROUP_NAME = /^[a-z0-9-]{3,64}$/;
const WORKGROUP_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const DATABASE_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,63}$/;
const DB_USER = /^[A-Za-z_][A-Za-z0-9_.@+-]{0,127}$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
/** EventBridge Scheduler's three forms; the fields themselves are checked by the service at deploy. */
const SCHEDULE_EXPRESSION =
  /^(cron\((\S+ ){5}\S+\)|rate\([1-9]\d* (minute|minutes|hour|hours|day|days)\)|at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\))$/;

function parseRedshift(field: Field): RedshiftSettings {
  field.object(
    REDSHIFT_KEYS,
    '{"clusterIdentifier": "analytics", "database": "dev", "secretArn": "arn:aws:secretsmanager:..."}',
  );
  const value = field.value as Record<string, unknown>;
  const database = field.child('database').matching(DATABASE_NAME, 'a Redshift database name');
  const secretArn = () =>
    field.child('secretArn').matching(SECRET_ARN, 'a Secrets Manager secret ARN');
  if ('workgroupName' in value) {
    for (const key of ['clusterIdentifier', 'dbUser'] as const) {
      if (key in value) {
        field
          .child(key)
          .fail(
            'belongs to a provisioned cluster, but workgroupName names a Redshift Serverless workgroup; keep one of them.',
          );
      }
    }
    const workgroupId = field.child('workgroupId');
    return {
      workgroupName: field
        .child('workgroupName')
        .matching(WORKGROUP_NAME, 'a workgroup name (3 to 64 lower-case letters, digits, hyphens)'),
      ...(workgroupId.present
        ? { workgroupId: workgroupId.matching(WORKGROUP_ID, "the workgroup's id (a UUID)") }
        : {}),
      database,
      ...('secretArn' in value ? { secretArn: secretArn() } : {}),
    };
  }
  if (!('clusterIdentifier' in value)) {
    field.fail(
      'names no Redshift: give "clusterIdentifier" (a provisioned cluster) or "workgroupName" (Redshift Serverless).',
    );
  }
  if ('workgroupId' in value) {
    field.child('workgroupId').fail('belongs to Redshift Serverless; remove it for a cluster.');
  }
  const clusterIdentifier = field
    .child('clusterIdentifier')
    .matching(CLUSTER_IDENTIFIER, 'a cluster identifier (lower-case letters, digits, hyphens)');
  if ('secretArn' in value === 'dbUser' in value) {
    field.fail(
      'a cluster needs exactly one way to sign in: "secretArn" (a Secrets Manager secret) or "dbUser" (temporary credentials for that database user).',
    );
  }
  return 'secretArn' in value
    ? { clusterIdentifier, database, secretArn: secretArn() }
    : {
        clusterIdentifier,
        database,
        dbUser: field.child('dbUser').matching(DB_USER, 'a Redshift user name'),
      };
}

function parseAurora(field: Field, region: string): AuroraSettings {
  field.object(
    AURORA_KEYS,
    '{"clusterArn": "arn:aws:rds:...:cluster:...", "secretArn": "arn:aws:secretsmanager:...", "database": "app"}',
  );
  const clusterField = field.child('clusterArn');
  const clusterArn = clusterField.matching(
    CLUSTER_ARN,
    'an Aurora cluster ARN (arn:aws:rds:<region>:<account>:cluster:<name>)',
  );
  const clusterRegion = CLUSTER_ARN.exec(clusterArn)![2];
  if (clusterRegion !== region) {
    clusterField.fail(
      `the cluster is in ${clusterRegion} but aws.region is ${region}; the RDS Data API is called in the stack's region, so deploy the stack where the cluster is.`,
    );
  }
  return {
    clusterArn,
    secretArn: field.child('secretArn').matching(SECRET_ARN, 'a Secrets Manager secret ARN'),
    database: field
      .child('database')
      .within(() => parseIdentifier(field.child('database').string('"app"'), 'the database')),
  };
}

function parseSchedule(field: Field): ScheduleSettings {
  const defaults = CONFIG_DEFAULTS.schedule;
  if (!field.present) return defaults;
  field.object(SCHEDULE_KEYS, '{"expression": "cron(0 3 * * ? *)", "timeZone": "Europe/Berlin"}');
  const expression = field.child('expression');
  const timeZoneField = field.child('timeZone');
  const timeZone = timeZoneField.present
    ? timeZoneField.string('"Europe/Berlin"')
    : defaults.timeZone;
  if (!isTimeZone(timeZone)) {
    timeZoneField.fail(
      `${JSON.stringify(timeZone)} is not an IANA time zone; use a name such as "Europe/Berlin", "America/New_York" or "UTC".`,
    );
  }
  return {
    expression: expression.present
      ? expression.matching(
          SCHEDULE_EXPRESSION,
          'an EventBridge Scheduler expression: "cron(0 3 * * ? *)", "rate(1 day)" or "at(2030-01-01T03:00:00)"',
        )
      : defaults.expression,
    timeZone,
    enabled: field.child('enabled').boolean(defaults.enabled),
  };
}

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

function parseAws(field: Field): AwsSettings {
  field.object(AWS_KEYS, '{"account": "123456789012", "region": "eu-west-1", ...}');
  const account = field.child('account').matching(ACCOUNT, 'a 12-digit AWS account id (a string)');
  const region = field.child('region').matching(REGION, 'an AWS region such as "eu-west-1"');
  const redshift = parseRedshift(field.child('redshift'));
  const unloadRole = field.child('unloadRoleArn');
  const alarmEmail = field.child('alarmEmail');
  return {
    account,
    region,
    redshift,
    ...(unloadRole.present
      ? {
          unloadRoleArn: unloadRole.matching(
            ROLE_ARN,
            'an IAM role ARN (arn:aws:iam::<account>:role/<name>) attached to the Redshift cluster',
          ),
        }
      : {}),
    aurora: parseAurora(field.child('aurora'), region),
    schedule: parseSchedule(field.child('schedule')),
    ...(alarmEmail.present ? { alarmEmail: alarmEmail.matching(EMAIL, 'an e-mail address') } : {}),
  };
}

function parseRuntimePart(root: Field): RuntimeConfig {
  root.object(TOP_KEYS, `{"tables": [${TABLE_EXAMPLE}]}`);
  return {
    tables: parseTables(root.child('tables')),
    locks: parseLocks(root.child('locks')),
    unload: parseUnload(root.child('unload')),
    retention: parseRetention(root.child('retention')),
  };
}

/** The whole file: the runtime part and, when present, the `aws` section. */
export function parseConfig(value: unknown, origin: string): SyncConfig {
  const root = new Field(origin, '', value);
  const runtime = parseRuntimePart(root);
  const aws = root.child('aws');
  return aws.present ? { ...runtime, aws: parseAws(aws) } : runtime;
}

/** What a run needs. An `aws` section may be present and is not looked at (the local run ignores it). */
export function parseRuntimeConfig(value: unknown, origin: string): RuntimeConfig {
  return parseRuntimePart(new Field(origin, '', value));
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
      problems.push(`${JSON.stringify(name)} is not a table name (${error.message})`);
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
