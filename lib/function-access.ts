/**
 * The pipeline's Lambda functions, one per handler file `lambdas/handlers/<name>.ts`, and
 * what each may touch. The construct turns this table into timeouts and IAM statements, so
 * a reviewer reads every function's access in one place. No CDK imports: the local run and
 * the AWS contract harness read it too (the Lambda code may not import from lib/).
 */

export const PIPELINE_FUNCTIONS = [
  'prepare-run',
  'dry-run',
  'start-unload',
  'check-unload',
  'create-staging',
  'import-file',
  'check-staging',
  'check-locks',
  'terminate-blockers',
  'swap-tables',
  'finish-run',
  'fail-run',
] as const;

export type PipelineFunctionName = (typeof PIPELINE_FUNCTIONS)[number];

export interface FunctionAccess {
  /** Seconds before Lambda stops the function. */
  readonly timeoutSeconds: number;
  /** Runs SQL in Aurora through the RDS Data API. */
  readonly aurora: boolean;
  /**
   * Redshift through the Redshift Data API: `submit` runs statements (and so needs credentials);
   * `poll` only reads the status and results of statements already submitted.
   */
  readonly redshift: 'none' | 'submit' | 'poll';
  /**
   * Lists (by name) and cancels Redshift statements it (its role) submitted: what a failed run
   * still runs.
   */
  readonly cancelsStatements: boolean;
  /** Under `runs/` in the bucket: reads run files (the plan, the unload record, manifests). */
  readonly readsRunFiles: boolean;
  /** Writes run files (the plan, the unload record, figures). */
  readonly writesRunFiles: boolean;
  /** Deletes run files (a finished or failed run's, or those an interrupted run left). */
  readonly deletesRunFiles: boolean;
  /**
   * Describes this state machine's executions: whether the run holding the run lease is still
   * going, to take over the lease of a run that was stopped.
   */
  readonly describesExecutions: boolean;
  /** Publishes to the alarm topic. */
  readonly notifies: boolean;
}

const BASE: FunctionAccess = {
  timeoutSeconds: 60,
  aurora: true,
  redshift: 'none',
  cancelsStatements: false,
  readsRunFiles: true,
  writesRunFiles: false,
  deletesRunFiles: false,
  describesExecutions: false,
  notifies: false,
};

export const FUNCTION_ACCESS: Readonly<Record<PipelineFunctionName, FunctionAccess>> = {
  'prepare-run': {
    ...BASE,
    readsRunFiles: false,
    writesRunFiles: true,
    deletesRunFiles: true,
    describesExecutions: true,
  },
  'dry-run': { ...BASE, deletesRunFiles: true },
  // Clears its tables' folders before UNLOAD (ListObjectsV2 + DeleteObjects), which refuses
  // a folder that holds files. Its timeout grows with the tables: see timeoutSecondsFor.
  'start-unload': { ...BASE, redshift: 'submit', writesRunFiles: true, deletesRunFiles: true },
  // Follows the unload session for up to 50 s (UNLOAD_CHECK_BUDGET_MS), then reads the finished
  // call's manifests and submits the next call on the session (hence 'submit').
  'check-unload': {
    ...BASE,
    timeoutSeconds: 120,
    aurora: false,
    redshift: 'submit',
    writesRunFiles: true,
  },
  // Builds the staging table's indexes, which takes minutes on large tables.
  'create-staging': { ...BASE, timeoutSeconds: 900 },
  // Starts files for 200 s (IMPORT_BUDGET_MS), each sized (unload.maxFileSizeMb) to import
  // within one 45 s Data API call, so every call has ended before 300 s.
  'import-file': { ...BASE, timeoutSeconds: 300 },
  // Computes the quality-gate figures over the whole staging table.
  'check-staging': { ...BASE, timeoutSeconds: 900 },
  // Polls the locks inside the function for a while to save state transitions.
  'check-locks': { ...BASE, timeoutSeconds: 120 },
  'terminate-blockers': BASE,
  // A truncate or merge swap copies rows; cut off by the Data API, it is followed in Aurora
  // for up to 13 minutes (SWAP_FOLLOW_BUDGET_MS).
  'swap-tables': { ...BASE, timeoutSeconds: 900 },
  'finish-run': { ...BASE, deletesRunFiles: true },
  // Finds the run's statements still running (ListStatements), cancels them and rolls back
  // their sessions (a call on the session, hence 'submit'): see stopRunStatements in
  // lambdas/pipeline/steps/unload-stop.ts.
  'fail-run': {
    ...BASE,
    redshift: 'submit',
    cancelsStatements: true,
    deletesRunFiles: true,
    notifies: true,
  },
};

/**
 * Column discovery in start-unload may wait up to this long per table (DISCOVERY_TIMEOUT_MS in
 * lambdas/pipeline/steps/unload.ts): the waits run one after another.
 */
export const DISCOVERY_SECONDS_PER_TABLE = 40;

/** Lambda's longest timeout. */
export const MAX_LAMBDA_TIMEOUT_SECONDS = 900;

/**
 * The function's timeout for a configuration of `tableCount` tables. start-unload discovers
 * every table's columns before it submits the unload, so it gets its base time plus
 * DISCOVERY_SECONDS_PER_TABLE per table, up to Lambda's 900 s.
 */
export function timeoutSecondsFor(name: PipelineFunctionName, tableCount: number): number {
  const { timeoutSeconds } = FUNCTION_ACCESS[name];
  if (name !== 'start-unload') return timeoutSeconds;
  return Math.min(
    MAX_LAMBDA_TIMEOUT_SECONDS,
    timeoutSeconds + DISCOVERY_SECONDS_PER_TABLE * tableCount,
  );
}

/**
 * Which IAM role a function runs as: its own, except that every function touching Redshift
 * statements shares one. The Redshift Data API ties a statement to the IAM identity that
 * submitted it; another identity may describe, read or cancel it only by assuming that role
 * (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-access.html, condition keys
 * redshift-data:statement-owner-iam-userid and session-owner-iam-userid in
 * https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftdataapi.html).
 * ListStatements (RoleLevel, default true) shows that ownership is by role, across sessions
 * (https://docs.aws.amazon.com/redshift-data/latest/APIReference/API_ListStatements.html), so
 * functions sharing a role see each other's statements; the guide says so of statements and
 * sessions alike: the Data API "treats the IAM role used when calling ExecuteStatement and
 * BatchExecuteStatement as the owner" (https://docs.aws.amazon.com/redshift/latest/mgmt/data-api-iam.html).
 * The shared role holds the union of its functions' access: fail-run, which cancels the
 * unload start-unload submitted, may so also write run files, and start-unload and
 * check-unload may publish to the alarm topic.
 */
export function roleGroupOf(name: PipelineFunctionName): string {
  return FUNCTION_ACCESS[name].redshift === 'none' ? name : REDSHIFT_STATEMENTS_ROLE;
}

/** The role group of the functions that submit, poll or cancel Redshift statements. */
export const REDSHIFT_STATEMENTS_ROLE = 'redshift-statements';
