import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_DEFAULTS,
  parseConfig,
  parseRuntimeConfig,
  requireAwsSettings,
  runtimeConfigJson,
  selectTables,
} from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';

const FILE = 'config/dev.json';

const AWS = {
  account: '123456789012',
  region: 'eu-west-1',
  redshift: {
    clusterIdentifier: 'analytics',
    database: 'analytics',
    secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift-AbCdEf',
  },
  aurora: {
    clusterArn: 'arn:aws:rds:eu-west-1:123456789012:cluster:app',
    secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aurora-AbCdEf',
    database: 'app',
  },
};

function withTables(...tables: unknown[]): Record<string, unknown> {
  return { tables };
}

const ORDERS = { source: 'sales.orders', target: 'public.orders' };

/** The message of the ConfigError `parse` throws; fails the test when it does not throw one. */
function errorOf(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigError, but the value was accepted');
}

describe('the committed config files', () => {
  it.each(['config/example.json', 'config/dev.json', 'config/prod.json'])(
    '%s parses with its aws section',
    (path) => {
      const config = parseConfig(JSON.parse(readFileSync(path, 'utf8')), path);
      expect(config.tables.length).toBeGreaterThan(0);
      expect(requireAwsSettings(config, path).account).toMatch(/^\d{12}$/);
    },
  );
});

describe('parseRuntimeConfig', () => {
  it('fills every default, from CONFIG_DEFAULTS, for a minimal file', () => {
    const config = parseRuntimeConfig(withTables(ORDERS), FILE);
    expect(config).toEqual({
      tables: [
        {
          source: { schema: 'sales', name: 'orders' },
          target: { schema: 'public', name: 'orders' },
          strategy: 'rename',
          allowEmpty: false,
        },
      ],
      locks: {
        lockTimeoutMs: 50,
        pollIntervalSeconds: 1,
        maxWaitSeconds: 3600,
        onMaxWait: 'fail',
        graceSeconds: 2,
      },
      unload: { maxFileSizeMb: 100 },
      retention: { keepVersions: 2, runFilesDays: 7 },
    });
    expect(config.locks).toEqual(CONFIG_DEFAULTS.locks);
  });

  it('parses names as PostgreSQL does: bare names fold, quoted names keep case and spaces', () => {
    const config = parseRuntimeConfig(
      withTables({ source: 'Sales."Order Items"', target: 'PUBLIC.Order_Items' }),
      FILE,
    );
    expect(config.tables[0]!.source).toEqual({ schema: 'sales', name: 'Order Items' });
    expect(config.tables[0]!.target).toEqual({ schema: 'public', name: 'order_items' });
  });

  it('ignores the aws section, which the local run does not use', () => {
    const config = parseRuntimeConfig({ tables: [ORDERS], aws: { anything: 'goes' } }, FILE);
    expect(config).not.toHaveProperty('aws');
  });

  it('refuses a file that is not an object, and one without tables', () => {
    expect(errorOf(() => parseRuntimeConfig([], FILE))).toMatch(
      /^config\/dev\.json: must be a JSON object such as/,
    );
    expect(errorOf(() => parseRuntimeConfig({}, FILE))).toMatch(
      /^config\/dev\.json: tables: is missing; list the tables to sync/,
    );
    expect(errorOf(() => parseRuntimeConfig({ tables: [] }, FILE))).toMatch(
      /^config\/dev\.json: tables: is empty/,
    );
  });

  it('refuses unknown keys at every level, suggesting the key that was meant', () => {
    expect(errorOf(() => parseRuntimeConfig({ tables: [ORDERS], lock: {} }, FILE))).toBe(
      'config/dev.json: lock: unknown key; did you mean "locks"? Allowed here: tables, locks, unload, retention, aws.',
    );
    expect(
      errorOf(() => parseRuntimeConfig(withTables(ORDERS, { ...ORDERS, stratgy: 'merge' }), FILE)),
    ).toMatch(/^config\/dev\.json: tables\[1\]\.stratgy: unknown key; did you mean "strategy"\?/);
    expect(
      errorOf(() => parseRuntimeConfig({ tables: [ORDERS], locks: { maxWait: 10 } }, FILE)),
    ).toMatch(/^config\/dev\.json: locks\.maxWait: unknown key\. Allowed here: lockTimeoutMs,/);
    expect(
      errorOf(() => parseRuntimeConfig({ tables: [ORDERS], retention: { keepversions: 1 } }, FILE)),
    ).toMatch(/retention\.keepversions: unknown key; did you mean "keepVersions"\?/);
  });

  it('names the table and field of a malformed table name, and what to write instead', () => {
    expect(
      errorOf(() =>
        parseRuntimeConfig(withTables(ORDERS, { source: 'orders', target: 'public.x' }), FILE),
      ),
    ).toMatch(
      /^config\/dev\.json: tables\[1\]\.source: the table "orders" must be written schema\.table/,
    );
    expect(
      errorOf(() =>
        parseRuntimeConfig(withTables({ source: 'sales.orders', target: 'public."open' }), FILE),
      ),
    ).toMatch(/^config\/dev\.json: tables\[0\]\.target: .*unterminated double quote/);
    expect(
      errorOf(() => parseRuntimeConfig(withTables({ source: 'sales.orders', target: 7 }), FILE)),
    ).toMatch(/^config\/dev\.json: tables\[0\]\.target: must be a non-empty string/);
  });

  it('refuses a target in the pipeline’s own schemas', () => {
    expect(
      errorOf(() =>
        parseRuntimeConfig(withTables({ ...ORDERS, target: 'redshift_sync_staging.x' }), FILE),
      ),
    ).toMatch(/tables\[0\]\.target: the schema redshift_sync_staging belongs to the pipeline/);
  });

  it('refuses a target that appears twice, naming both entries', () => {
    expect(
      errorOf(() =>
        parseRuntimeConfig(
          withTables(ORDERS, { source: 'sales.b', target: 'PUBLIC."orders"' }),
          FILE,
        ),
      ),
    ).toBe(
      'config/dev.json: tables[1].target: public.orders is already the target of tables[0]; each target may appear once.',
    );
  });

  it('accepts the three strategies and refuses others', () => {
    for (const strategy of ['rename', 'truncate', 'merge']) {
      expect(
        parseRuntimeConfig(withTables({ ...ORDERS, strategy }), FILE).tables[0]!.strategy,
      ).toBe(strategy);
    }
    expect(
      errorOf(() => parseRuntimeConfig(withTables({ ...ORDERS, strategy: 'swap' }), FILE)),
    ).toBe(
      'config/dev.json: tables[0].strategy: must be one of "rename", "truncate", "merge", not "swap".',
    );
  });

  it('takes incremental settings, names every bad field by path, and writes them back', () => {
    const parsed = parseRuntimeConfig(
      withTables(
        { ...ORDERS, incremental: { cursor: 'Updated_At', mode: 'merge' }, primaryKey: ['id'] },
        {
          source: 'sales.events',
          target: 'public.events',
          incremental: { cursor: '"Seq"', mode: 'append', deletes: 'ignore' },
        },
      ),
      FILE,
    );
    expect(parsed.tables[0]!.incremental).toEqual({
      cursor: 'updated_at',
      mode: 'merge',
      deletes: 'ignore',
    });
    expect(parsed.tables[0]!.primaryKey).toEqual(['id']);
    expect(parsed.tables[1]!.incremental).toEqual({
      cursor: 'Seq',
      mode: 'append',
      deletes: 'ignore',
    });
    expect(parseRuntimeConfig(runtimeConfigJson(parsed), FILE)).toEqual(parsed);
    // reconcile takes a key in mode append too; written back as it came.
    const reconciled = parseRuntimeConfig(
      withTables({
        source: 'sales.events',
        target: 'public.events',
        primaryKey: ['Code', '"Region"'],
        incremental: { cursor: 'seq', mode: 'append', deletes: 'reconcile' },
      }),
      FILE,
    );
    expect(reconciled.tables[0]).toMatchObject({
      primaryKey: ['code', 'Region'],
      incremental: { mode: 'append', deletes: 'reconcile' },
    });
    expect(parseRuntimeConfig(runtimeConfigJson(reconciled), FILE)).toEqual(reconciled);
    const bad = (incremental: unknown) =>
      errorOf(() => parseRuntimeConfig(withTables({ ...ORDERS, incremental }), FILE));
    expect(bad({ cursor: 'updated_at' })).toMatch(
      /^config\/dev\.json: tables\[0\]\.incremental\.mode: is missing; .*"merge".*"append"/,
    );
    expect(bad({ cursor: 'updated_at', mode: 'upsert' })).toBe(
      'config/dev.json: tables[0].incremental.mode: must be one of "merge", "append", not "upsert".',
    );
    expect(bad({ mode: 'append' })).toMatch(
      /^config\/dev\.json: tables\[0\]\.incremental\.cursor: must be a non-empty string/,
    );
    expect(bad({ cursor: 'a.b', mode: 'append' })).toMatch(
      /tables\[0\]\.incremental\.cursor: the cursor column "a\.b" must be a single name/,
    );
    expect(bad({ cursor: 'x', mode: 'append', deletes: 'drop' })).toMatch(
      /tables\[0\]\.incremental\.deletes: must be one of "ignore", "reconcile", not "drop"/,
    );
    expect(bad({ cursor: 'x', mode: 'append', curser: 1 })).toMatch(
      /tables\[0\]\.incremental\.curser: unknown key; did you mean "cursor"\?/,
    );
    expect(bad('updated_at')).toMatch(/tables\[0\]\.incremental: must be a JSON object/);
  });

  it('takes primaryKey for merge only, parsed as column names', () => {
    const merged = parseRuntimeConfig(
      withTables({ ...ORDERS, strategy: 'merge', primaryKey: ['Order_ID', '"Line No"'] }),
      FILE,
    );
    expect(merged.tables[0]!.primaryKey).toEqual(['order_id', 'Line No']);
    const discovered = parseRuntimeConfig(withTables({ ...ORDERS, strategy: 'merge' }), FILE);
    expect(discovered.tables[0]).not.toHaveProperty('primaryKey');

    expect(
      errorOf(() => parseRuntimeConfig(withTables({ ...ORDERS, primaryKey: ['id'] }), FILE)),
    ).toMatch(
      /^config\/dev\.json: tables\[0\]\.primaryKey: only strategy "merge", incremental mode "merge" and incremental deletes "reconcile" use a key; .*strategy is "rename"/,
    );
    expect(
      errorOf(() =>
        parseRuntimeConfig(withTables({ ...ORDERS, strategy: 'merge', primaryKey: [] }), FILE),
      ),
    ).toMatch(/tables\[0\]\.primaryKey: must name at least one column/);
    expect(
      errorOf(() =>
        parseRuntimeConfig(
          withTables({ ...ORDERS, strategy: 'merge', primaryKey: ['id', 'ID'] }),
          FILE,
        ),
      ),
    ).toMatch(/tables\[0\]\.primaryKey\[1\]: the column id is named twice/);
    expect(
      errorOf(() =>
        parseRuntimeConfig(withTables({ ...ORDERS, strategy: 'merge', primaryKey: ['a.b'] }), FILE),
      ),
    ).toMatch(/tables\[0\]\.primaryKey\[0\]: the column "a\.b" must be a single name/);
  });

  it('checks allowEmpty is a boolean', () => {
    expect(
      parseRuntimeConfig(withTables({ ...ORDERS, allowEmpty: true }), FILE).tables[0]!.allowEmpty,
    ).toBe(true);
    expect(
      errorOf(() => parseRuntimeConfig(withTables({ ...ORDERS, allowEmpty: 'yes' }), FILE)),
    ).toBe('config/dev.json: tables[0].allowEmpty: must be true or false, not "yes".');
  });

  it('checks each lock setting against its range, with its default in the message', () => {
    const bad = (locks: Record<string, unknown>) =>
      errorOf(() => parseRuntimeConfig({ tables: [ORDERS], locks }, FILE));
    expect(bad({ lockTimeoutMs: 5 })).toBe(
      'config/dev.json: locks.lockTimeoutMs: must be a whole number of milliseconds from 10 to 60000 (default 50), not 5.',
    );
    expect(bad({ pollIntervalSeconds: 0.5 })).toBe(
      'config/dev.json: locks.pollIntervalSeconds: must be a whole number of seconds from 1 to 300 (default 1), not 0.5.',
    );
    expect(bad({ maxWaitSeconds: 100_000 })).toMatch(
      /locks\.maxWaitSeconds: must be a whole number of seconds from 0 to 86400 \(default 3600\)/,
    );
    expect(bad({ maxWaitSeconds: '60' })).toMatch(/locks\.maxWaitSeconds: .*not "60"\./);
    expect(bad({ onMaxWait: 'kill' })).toBe(
      'config/dev.json: locks.onMaxWait: must be one of "fail", "terminate", not "kill".',
    );
    expect(bad({ graceSeconds: -1 })).toMatch(
      /locks\.graceSeconds: must be a number of seconds from 0 to 600 \(default 2\)/,
    );
    const config = parseRuntimeConfig(
      { tables: [ORDERS], locks: { graceSeconds: 0.5, onMaxWait: 'terminate', maxWaitSeconds: 0 } },
      FILE,
    );
    expect(config.locks).toMatchObject({
      graceSeconds: 0.5,
      onMaxWait: 'terminate',
      maxWaitSeconds: 0,
    });
  });

  it('checks unload and retention settings', () => {
    expect(
      errorOf(() => parseRuntimeConfig({ tables: [ORDERS], unload: { maxFileSizeMb: 4 } }, FILE)),
    ).toMatch(
      /^config\/dev\.json: unload\.maxFileSizeMb: must be a whole number of MB from 5 to 6000/,
    );
    expect(
      errorOf(() => parseRuntimeConfig({ tables: [ORDERS], retention: { runFilesDays: 0 } }, FILE)),
    ).toMatch(
      /retention\.runFilesDays: must be a whole number of days from 1 to 3650 \(default 7\)/,
    );
    expect(
      parseRuntimeConfig({ tables: [ORDERS], retention: { keepVersions: 0 } }, FILE).retention,
    ).toEqual({ keepVersions: 0, runFilesDays: 7 });
  });
});

describe('parseConfig and requireAwsSettings', () => {
  it('parses the aws section and fills the schedule defaults', () => {
    const config = parseConfig({ tables: [ORDERS], aws: AWS }, FILE);
    expect(requireAwsSettings(config, FILE)).toEqual({
      ...AWS,
      schedule: { expression: 'cron(0 3 * * ? *)', timeZone: 'UTC', enabled: true },
    });
  });

  it('asks for the aws section only when deploying', () => {
    const config = parseConfig({ tables: [ORDERS] }, FILE);
    expect(config.aws).toBeUndefined();
    expect(errorOf(() => requireAwsSettings(config, FILE))).toMatch(
      /^config\/dev\.json: aws: is missing; a deployed environment needs/,
    );
  });

  const awsError = (aws: unknown) => errorOf(() => parseConfig({ tables: [ORDERS], aws }, FILE));

  it('accepts the three ways of reaching Redshift', () => {
    const redshift = (value: unknown) =>
      requireAwsSettings(
        parseConfig({ tables: [ORDERS], aws: { ...AWS, redshift: value } }, FILE),
        FILE,
      ).redshift;
    expect(redshift({ clusterIdentifier: 'c1', database: 'd', dbUser: 'sync' })).toEqual({
      clusterIdentifier: 'c1',
      database: 'd',
      dbUser: 'sync',
    });
    expect(redshift({ workgroupName: 'wg-1', database: 'd' })).toEqual({
      workgroupName: 'wg-1',
      database: 'd',
    });
    expect(
      redshift({
        workgroupName: 'wg-1',
        workgroupId: '0f0e0d0c-0b0a-0908-0706-050403020100',
        database: 'd',
        secretArn: AWS.redshift.secretArn,
      }),
    ).toMatchObject({ workgroupId: '0f0e0d0c-0b0a-0908-0706-050403020100' });
  });

  it('refuses a Redshift section that mixes or lacks the ways of signing in', () => {
    expect(
      awsError({ ...AWS, redshift: { database: 'd', secretArn: AWS.redshift.secretArn } }),
    ).toMatch(/^config\/dev\.json: aws\.redshift: names no Redshift: give "clusterIdentifier"/);
    expect(awsError({ ...AWS, redshift: { clusterIdentifier: 'c1', database: 'd' } })).toMatch(
      /aws\.redshift: a cluster needs exactly one way to sign in/,
    );
    expect(
      awsError({
        ...AWS,
        redshift: { ...AWS.redshift, dbUser: 'sync' },
      }),
    ).toMatch(/aws\.redshift: a cluster needs exactly one way to sign in/);
    expect(
      awsError({ ...AWS, redshift: { workgroupName: 'wg-1', database: 'd', dbUser: 'x' } }),
    ).toMatch(/aws\.redshift\.dbUser: belongs to a provisioned cluster/);
    expect(
      awsError({ ...AWS, redshift: { ...AWS.redshift, clusterIdentifier: 'Bad_Name' } }),
    ).toMatch(/aws\.redshift\.clusterIdentifier: "Bad_Name" is not a cluster identifier/);
  });

  it('checks ARNs, account, region and e-mail by shape', () => {
    expect(awsError({ ...AWS, account: 123456789012 })).toMatch(
      /aws\.account: must be a non-empty string such as a 12-digit AWS account id/,
    );
    expect(awsError({ ...AWS, region: 'Ireland' })).toMatch(
      /aws\.region: "Ireland" is not an AWS region/,
    );
    expect(awsError({ ...AWS, aurora: { ...AWS.aurora, secretArn: 'aurora-secret' } })).toMatch(
      /^config\/dev\.json: aws\.aurora\.secretArn: "aurora-secret" is not a Secrets Manager secret ARN\./,
    );
    expect(awsError({ ...AWS, unloadRoleArn: 'arn:aws:iam::123456789012:user/x' })).toMatch(
      /aws\.unloadRoleArn: .* is not an IAM role ARN/,
    );
    expect(awsError({ ...AWS, alarmEmail: 'nobody' })).toMatch(
      /aws\.alarmEmail: "nobody" is not an e-mail address/,
    );
  });

  it('refuses an Aurora cluster outside the stack’s region', () => {
    expect(
      awsError({
        ...AWS,
        aurora: { ...AWS.aurora, clusterArn: 'arn:aws:rds:us-east-1:123456789012:cluster:app' },
      }),
    ).toMatch(/aws\.aurora\.clusterArn: the cluster is in us-east-1 but aws\.region is eu-west-1/);
  });

  it('checks the schedule expression and time zone', () => {
    const schedule = (value: unknown) =>
      requireAwsSettings(
        parseConfig({ tables: [ORDERS], aws: { ...AWS, schedule: value } }, FILE),
        FILE,
      ).schedule;
    expect(
      schedule({ expression: 'rate(12 hours)', timeZone: 'America/New_York', enabled: false }),
    ).toEqual({
      expression: 'rate(12 hours)',
      timeZone: 'America/New_York',
      enabled: false,
    });
    expect(awsError({ ...AWS, schedule: { expression: '0 3 * * *' } })).toMatch(
      /aws\.schedule\.expression: "0 3 \* \* \*" is not an EventBridge Scheduler expression/,
    );
    expect(awsError({ ...AWS, schedule: { timeZone: 'Berlin/Europe' } })).toMatch(
      /aws\.schedule\.timeZone: "Berlin\/Europe" is not an IANA time zone/,
    );
    expect(awsError({ ...AWS, schedule: { enabled: 'no' } })).toMatch(
      /aws\.schedule\.enabled: must be true or false/,
    );
  });
});

describe('runtimeConfigJson', () => {
  it('writes every default out and reads back to an equal config', () => {
    const config = parseRuntimeConfig(
      withTables(
        {
          source: 'Sales."Order Items"',
          target: 'public."Order ""Items"""',
          strategy: 'merge',
          primaryKey: ['"Line No"', 'id'],
        },
        ORDERS,
      ),
      FILE,
    );
    const json = runtimeConfigJson(config);
    expect(json.tables).toEqual([
      {
        source: 'sales."Order Items"',
        target: 'public."Order ""Items"""',
        strategy: 'merge',
        primaryKey: ['"Line No"', 'id'],
        allowEmpty: false,
      },
      { source: 'sales.orders', target: 'public.orders', strategy: 'rename', allowEmpty: false },
    ]);
    expect(json.locks).toEqual(CONFIG_DEFAULTS.locks);
    const again = parseRuntimeConfig(JSON.parse(JSON.stringify(json)), 'the state machine');
    expect(again).toEqual(config);
  });
});

describe('selectTables', () => {
  const config = parseRuntimeConfig(
    withTables(
      ORDERS,
      { source: 'sales.items', target: 'public.items' },
      { source: 'mk.c', target: 'reporting."Campaigns"' },
    ),
    FILE,
  );
  const targets = (names: string[] | undefined) =>
    selectTables(config, names, 'the execution input').map((table) => table.target.name);

  it('selects every table when no names are given, else the named ones in configured order', () => {
    expect(targets(undefined)).toEqual(['orders', 'items', 'Campaigns']);
    expect(targets(['reporting."Campaigns"', 'PUBLIC.Orders'])).toEqual(['orders', 'Campaigns']);
  });

  it('refuses unknown, malformed and repeated names by name, listing the configured targets', () => {
    expect(
      errorOf(() =>
        selectTables(
          config,
          ['public.order', 'orders', 'public.items', 'public.ITEMS'],
          'the execution input',
        ),
      ),
    ).toBe(
      'the execution input: public.order is not a configured target; the table "orders" must be written schema.table (for example public.orders or sales."Order Items"); found 1 part; public.items is named twice. Configured targets: public.orders, public.items, reporting."Campaigns".',
    );
    expect(errorOf(() => selectTables(config, [], '--tables'))).toMatch(
      /^--tables: the table list is empty; name at least one configured target \(public\.orders, public\.items, reporting\."Campaigns"\)/,
    );
  });
});
