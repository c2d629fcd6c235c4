/**
 * The pipeline's state machine (its definition is lib/pipeline-definition.ts), its log group,
 * and the EventBridge Scheduler schedule that starts a run.
 */
import { Duration, TimeZone } from 'aws-cdk-lib';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Schedule, ScheduleExpression, ScheduleTargetInput } from 'aws-cdk-lib/aws-scheduler';
import { StepFunctionsStartExecution } from 'aws-cdk-lib/aws-scheduler-targets';
import {
  DefinitionBody,
  LogLevel,
  StateMachine,
  type StateMachineProps,
  StateMachineType,
} from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { CONFIG_DEFAULTS, type RuntimeConfig } from '../lambdas/core/config';
import { PIPELINE_FUNCTIONS, type PipelineFunctionName } from './function-access';
import { acknowledgeWildcardResources, isLiteral, refuseProp } from './nag';
import { buildPipelineDefinition } from './pipeline-definition';
import { checkScheduleAgainstDaylightSaving } from './schedule-daylight-saving';

export interface RunSchedule {
  /**
   * `cron(min hour day-of-month month day-of-week year)`, `rate(n unit)` or `at(...)`. A cron
   * time of day that daylight saving skips or repeats in `timeZone` is refused.
   * @default 'cron(0 3 * * ? *)': daily at 03:00
   */
  readonly expression?: string;
  /**
   * An IANA time zone such as `Europe/Berlin`; cron follows its daylight saving time.
   * @default 'UTC'
   */
  readonly timeZone?: string;
  /**
   * false deploys the schedule switched off (runs only by hand).
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * The schedule's description, shown in the EventBridge Scheduler console.
   * @default 'Starts a redshift-aurora-sync run'
   */
  readonly description?: string;
}

/** What may be overridden on the state machine; its definition, name and type are the pipeline's. */
export type PipelineStateMachineOverrides = Omit<
  StateMachineProps,
  | 'definition'
  | 'definitionBody'
  | 'definitionSubstitutions'
  | 'stateMachineName'
  | 'stateMachineType'
>;

export interface SyncStateMachineProps {
  /** One function per handler (PipelineFunctions' `functions`). */
  readonly functions: Readonly<Record<PipelineFunctionName, IFunction>>;
  /** Tables, lock, unload and retention settings; embedded in the definition. */
  readonly runtimeConfig: RuntimeConfig;
  /**
   * The state machine's name. Give one when prepare-run must find it (PipelineFunctions'
   * `stateMachineName`): a fixed name lets it list the executions by ARN without a circular
   * reference.
   * @default a name CloudFormation generates
   */
  readonly stateMachineName?: string;
  /**
   * When a run starts.
   * @default daily at 03:00 UTC, enabled (`cron(0 3 * * ? *)`)
   */
  readonly schedule?: RunSchedule;
  /**
   * How long the state machine's log is kept.
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;
  /**
   * Overrides of the state machine's props, e.g. `timeout`, `role`, `removalPolicy` or `logs`.
   * @default Standard, traced, cut off after 24 h, every event logged without execution data
   */
  readonly stateMachineProps?: PipelineStateMachineOverrides;
}

export class SyncStateMachine extends Construct {
  readonly stateMachine: StateMachine;
  readonly schedule: Schedule;
  /** The state machine's log group; undefined when `stateMachineProps.logs` replaces it. */
  readonly logGroup?: LogGroup;

  constructor(scope: Construct, id: string, props: SyncStateMachineProps) {
    super(scope, id);
    const schedule: Required<RunSchedule> = {
      ...CONFIG_DEFAULTS.schedule,
      description: 'Starts a redshift-aurora-sync run',
      ...props.schedule,
    };
    validate(this, props, schedule);
    const overrides = props.stateMachineProps ?? {};
    if (!overrides.logs) {
      this.logGroup = new LogGroup(this, 'StateMachineLogs', {
        retention: props.logRetention ?? RetentionDays.THREE_MONTHS,
      });
    }
    this.stateMachine = new StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromChainable(
        buildPipelineDefinition(this, {
          functions: props.functions,
          runtimeConfig: props.runtimeConfig,
        }),
      ),
      timeout: Duration.hours(24),
      tracingEnabled: true,
      // Every event, but without inputs and outputs: those carry table names, blockers'
      // queries and user names, which do not belong in a log kept for months.
      ...(this.logGroup
        ? { logs: { destination: this.logGroup, level: LogLevel.ALL, includeExecutionData: false } }
        : {}),
      ...overrides,
    });
    acknowledgeWildcardResources(this.stateMachine.role, [
      ...PIPELINE_FUNCTIONS.map((name) => ({
        resource: `${props.functions[name].functionArn}:*`,
        reason:
          "Each Lambda task may invoke its function by version or alias; the grant names the pipeline's own functions.",
      })),
      {
        resource: '*',
        reason:
          'CloudWatch Logs delivery (logs:CreateLogDelivery and related) and X-Ray tracing support no resource-level permissions.',
      },
    ]);
    this.schedule = new Schedule(this, 'Schedule', {
      description: schedule.description,
      schedule: ScheduleExpression.expression(schedule.expression, TimeZone.of(schedule.timeZone)),
      target: new StepFunctionsStartExecution(this.stateMachine, {
        input: ScheduleTargetInput.fromObject({}),
      }),
      enabled: schedule.enabled,
    });
  }
}

function validate(
  scope: Construct,
  props: SyncStateMachineProps,
  schedule: Required<RunSchedule>,
): void {
  const missing = PIPELINE_FUNCTIONS.filter((name) => !props.functions[name]);
  if (missing.length > 0) {
    refuseProp(
      scope,
      'functions',
      `has no function for ${missing.join(', ')}; give one per handler.`,
    );
  }
  if (isLiteral(props.stateMachineName) && !/^[A-Za-z0-9_-]{1,80}$/.test(props.stateMachineName)) {
    refuseProp(
      scope,
      'stateMachineName',
      `is ${JSON.stringify(props.stateMachineName)}; give 1 to 80 letters, digits, hyphens or underscores.`,
    );
  }
  if (!/^(cron|rate|at)\(.+\)$/.test(schedule.expression.trim())) {
    refuseProp(
      scope,
      'schedule.expression',
      `is ${JSON.stringify(schedule.expression)}; give cron(...), rate(...) or at(...).`,
    );
  }
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: schedule.timeZone });
  } catch {
    refuseProp(
      scope,
      'schedule.timeZone',
      `is ${JSON.stringify(schedule.timeZone)}; give an IANA time zone such as Europe/Berlin.`,
    );
  }
  checkScheduleAgainstDaylightSaving(schedule.expression, schedule.timeZone, {
    field: `${scope.node.path}: schedule.expression`,
  });
}
