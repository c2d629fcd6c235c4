/**
 * The `aws` section of a configuration file: where the stack deploys and what it connects to.
 * Only the CDK app reads it (through `parseConfig`); a local run ignores it.
 */
import type * as z from 'zod';
import { CONFIG_DEFAULTS } from './config-defaults';
import { flag, matching, object, parsedBy, text } from './config-fields';
import { parseIdentifier } from './identifiers';

const PARTITION = 'aws(-[a-z]+)*';
const SECRET_ARN = new RegExp(
  `^arn:${PARTITION}:secretsmanager:[a-z0-9-]+:\\d{12}:secret:[A-Za-z0-9/_+=.@-]+$`,
);
const CLUSTER_ARN = new RegExp(
  `^arn:${PARTITION}:rds:([a-z0-9-]+):\\d{12}:cluster:[a-z][a-z0-9-]*$`,
);
const ROLE_ARN = new RegExp(`^arn:${PARTITION}:iam::\\d{12}:role/[A-Za-z0-9/_+=,.@-]+$`);
/** EventBridge Scheduler's three forms; the fields themselves are checked by the service at deploy. */
const SCHEDULE_EXPRESSION =
  /^(cron\((\S+ ){5}\S+\)|rate\([1-9]\d* (minute|minutes|hour|hours|day|days)\)|at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\))$/;

const secretArn = matching(SECRET_ARN, 'a Secrets Manager secret ARN').describe(
  'The Secrets Manager secret the Data API signs in with.',
);

/** How the Lambdas reach Redshift through the Redshift Data API. */
export type RedshiftSettings =
  | { readonly clusterIdentifier: string; readonly database: string; readonly secretArn: string }
  | { readonly clusterIdentifier: string; readonly database: string; readonly dbUser: string }
  | {
      readonly workgroupName: string;
      readonly workgroupId?: string;
      readonly database: string;
      readonly secretArn?: string;
    };

const PROVISIONED_ONLY =
  'belongs to a provisioned cluster, but workgroupName names a Redshift Serverless workgroup; keep one of them.';

/** One object with every key, the combinations checked as a whole, so that a wrong mix is named in words. */
const redshift = object(
  {
    clusterIdentifier: matching(
      /^[a-z][a-z0-9-]{0,62}$/,
      'a cluster identifier (lower-case letters, digits, hyphens)',
    )
      .optional()
      .describe('A provisioned cluster; with `secretArn` or `dbUser`.'),
    workgroupName: matching(
      /^[a-z0-9-]{3,64}$/,
      'a workgroup name (3 to 64 lower-case letters, digits, hyphens)',
    )
      .optional()
      .describe(
        "Redshift Serverless; with `secretArn`, or else the caller's IAM identity (`redshift-serverless:GetCredentials`).",
      ),
    workgroupId: matching(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
      "the workgroup's id (a UUID)",
    )
      .optional()
      .describe(
        "Serverless only: the workgroup's id (a UUID, shown in the console). With it the IAM grants name this workgroup; without it they cover every workgroup of the account in the region.",
      ),
    database: matching(/^[A-Za-z_][A-Za-z0-9_$]{0,63}$/, 'a Redshift database name').describe(
      'The Redshift database holding the source tables.',
    ),
    secretArn: secretArn.optional(),
    dbUser: matching(/^[A-Za-z_][A-Za-z0-9_.@+-]{0,127}$/, 'a Redshift user name')
      .optional()
      .describe(
        'A cluster only: sign in as this database user (`redshift:GetClusterCredentials`) instead of with a secret.',
      ),
  },
  '{"clusterIdentifier": "analytics", "database": "dev", "secretArn": "arn:aws:secretsmanager:..."}',
)
  .superRefine((value, context) => {
    const problem = (message: string, key?: string) =>
      context.addIssue({ code: 'custom', message, path: key ? [key] : [] });
    if (value.workgroupName !== undefined) {
      if (value.clusterIdentifier !== undefined) problem(PROVISIONED_ONLY, 'clusterIdentifier');
      if (value.dbUser !== undefined) problem(PROVISIONED_ONLY, 'dbUser');
    } else if (value.clusterIdentifier === undefined) {
      problem(
        'names no Redshift: give "clusterIdentifier" (a provisioned cluster) or "workgroupName" (Redshift Serverless).',
      );
    } else if (value.workgroupId !== undefined) {
      problem('belongs to Redshift Serverless; remove it for a cluster.', 'workgroupId');
    } else if ((value.secretArn === undefined) === (value.dbUser === undefined)) {
      problem(
        'a cluster needs exactly one way to sign in: "secretArn" (a Secrets Manager secret) or "dbUser" (temporary credentials for that database user).',
      );
    }
  })
  .transform((value) => value as RedshiftSettings)
  .describe(
    'How the Lambdas reach Redshift (Redshift Data API): `{clusterIdentifier, database, secretArn}`, or `{clusterIdentifier, database, dbUser}`, or Serverless `{workgroupName, database, secretArn?, workgroupId?}`.',
  );

const aurora = object(
  {
    clusterArn: matching(
      CLUSTER_ARN,
      'an Aurora cluster ARN (arn:aws:rds:<region>:<account>:cluster:<name>)',
    ).describe(
      "`arn:aws:rds:<region>:<account>:cluster:<id>`, in the stack's region (the RDS Data API is regional).",
    ),
    secretArn,
    database: parsedBy('"app"', (name) => parseIdentifier(name, 'the database')).describe(
      'The database holding the live tables (a PostgreSQL name).',
    ),
  },
  '{"clusterArn": "arn:aws:rds:...:cluster:...", "secretArn": "arn:aws:secretsmanager:...", "database": "app"}',
).describe(
  'The Aurora cluster: `{clusterArn, secretArn, database}`; it needs the RDS Data API and `aws_s3`.',
);

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

const schedule = object(
  {
    expression: matching(
      SCHEDULE_EXPRESSION,
      'an EventBridge Scheduler expression: "cron(0 3 * * ? *)", "rate(1 day)" or "at(2030-01-01T03:00:00)"',
    )
      .default(CONFIG_DEFAULTS.schedule.expression)
      .describe(
        'An EventBridge Scheduler expression: `cron(min hour day-of-month month day-of-week year)`, `rate(n unit)` or `at(...)`.',
      ),
    timeZone: text('"Europe/Berlin"')
      .refine(isTimeZone, {
        error: (issue) =>
          `${JSON.stringify(issue.input)} is not an IANA time zone; use a name such as "Europe/Berlin", "America/New_York" or "UTC".`,
      })
      .default(CONFIG_DEFAULTS.schedule.timeZone)
      .describe(
        'An IANA time zone such as `Europe/Berlin`; cron follows its daylight saving time.',
      ),
    enabled: flag(CONFIG_DEFAULTS.schedule.enabled).describe(
      '`false` deploys the schedule switched off (runs only by hand).',
    ),
  },
  '{"expression": "cron(0 3 * * ? *)", "timeZone": "Europe/Berlin"}',
)
  .default(CONFIG_DEFAULTS.schedule)
  .describe('When EventBridge Scheduler starts a run.');

export const awsSchema = object(
  {
    account: matching(/^\d{12}$/, 'a 12-digit AWS account id (a string)').describe(
      'The 12-digit account the stack deploys to.',
    ),
    region: matching(/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/, 'an AWS region such as "eu-west-1"').describe(
      'The region the stack deploys to, e.g. `eu-west-1`.',
    ),
    redshift,
    unloadRoleArn: matching(
      ROLE_ARN,
      'an IAM role ARN (arn:aws:iam::<account>:role/<name>) attached to the Redshift cluster',
    )
      .optional()
      .describe(
        'An IAM role already attached to the Redshift cluster that UNLOAD runs as. Absent: the stack creates one, which must then be attached to the cluster.',
      ),
    aurora,
    schedule,
    alarmEmail: matching(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, 'an e-mail address')
      .optional()
      .describe(
        'Who is e-mailed when a run fails or data gets stale. Absent: subscribe to the topic yourself.',
      ),
  },
  '{"account": "123456789012", "region": "eu-west-1", ...}',
)
  .superRefine((aws, context) => {
    const clusterRegion = CLUSTER_ARN.exec(aws.aurora.clusterArn)![2];
    if (clusterRegion !== aws.region) {
      context.addIssue({
        code: 'custom',
        path: ['aurora', 'clusterArn'],
        message: `the cluster is in ${clusterRegion} but aws.region is ${aws.region}; the RDS Data API is called in the stack's region, so deploy the stack where the cluster is.`,
      });
    }
  })
  .describe(
    'Where the stack deploys and what it connects to; needed to deploy, ignored by the local run.',
  );

export type AwsSettings = z.output<typeof awsSchema>;
export type AuroraSettings = AwsSettings['aurora'];
export type ScheduleSettings = AwsSettings['schedule'];
