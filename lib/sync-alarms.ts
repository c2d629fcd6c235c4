/**
 * What pages someone: an encrypted SNS topic (fail-run publishes to it too), alarms on failed
 * and timed-out runs and on a day without a successful run, and a dashboard of the runs.
 */
import { Annotations, Duration, Token } from 'aws-cdk-lib';
import {
  Alarm,
  type AlarmProps,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IMetric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { IFunction } from 'aws-cdk-lib/aws-lambda';
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IStateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { refuseProp } from './nag';

export interface AlarmTopicProps {
  /** The customer-managed key the topic is encrypted with; CloudWatch is allowed to use it. */
  readonly encryptionKey: IKey;
  /**
   * @default 'redshift-aurora-sync'
   */
  readonly displayName?: string;
}

/**
 * An SSL-only topic encrypted with `encryptionKey`, whose key policy lets CloudWatch alarms
 * publish to it: SNS uses the key on the alarm's behalf
 * (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html). An imported key's
 * policy is its owner's; it must allow the same.
 */
export function createAlarmTopic(scope: Construct, id: string, props: AlarmTopicProps): Topic {
  const { statementAdded } = props.encryptionKey.addToResourcePolicy(
    new PolicyStatement({
      principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: ['*'],
    }),
  );
  const topic = new Topic(scope, id, {
    displayName: props.displayName ?? 'redshift-aurora-sync',
    masterKey: props.encryptionKey,
    enforceSSL: true,
  });
  if (!statementAdded) {
    Annotations.of(topic).addWarningV2(
      'redshift-aurora-sync:alarm-topic-key',
      `The alarm topic's key (${props.encryptionKey.keyArn}) is not managed by this stack: its key policy must allow cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey, or alarms cannot publish to the topic.`,
    );
  }
  return topic;
}

export interface SyncAlarmsProps {
  /** The pipeline's state machine, whose runs are watched. */
  readonly stateMachine: IStateMachine;
  /**
   * The pipeline's functions, whose errors the dashboard shows by name.
   * @default none: the dashboard has no step-errors graph
   */
  readonly functions?: Readonly<Record<string, IFunction>>;
  /**
   * The topic the alarms publish to. Its key, if any, must let cloudwatch.amazonaws.com use it
   * (createAlarmTopic does).
   * @default a new topic (createAlarmTopic) encrypted with `encryptionKey`
   */
  readonly topic?: ITopic;
  /**
   * The key a new topic is encrypted with; required without `topic`.
   * @default none
   */
  readonly encryptionKey?: IKey;
  /**
   * Who is e-mailed when a run fails or data gets stale.
   * @default no subscription: subscribe to the topic yourself
   */
  readonly alarmEmail?: string;
  /**
   * Whether to alarm when no run succeeded for 26 hours (a daily schedule plus two hours).
   * Turn it off when runs start only by hand: nothing would succeed, and the alarm would stay
   * in ALARM for ever.
   * @default true
   */
  readonly staleDataAlarm?: boolean;
  /**
   * The dashboard's name.
   * @default a name CloudFormation generates
   */
  readonly dashboardName?: string;
}

export class SyncAlarms extends Construct {
  readonly topic: ITopic;
  readonly alarms: readonly Alarm[];
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: SyncAlarmsProps) {
    super(scope, id);
    validate(this, props);
    this.topic =
      props.topic ??
      createAlarmTopic(this, 'AlarmTopic', { encryptionKey: props.encryptionKey as IKey });
    if (props.alarmEmail) this.topic.addSubscription(new EmailSubscription(props.alarmEmail));
    this.alarms = this.createAlarms(props.stateMachine, props.staleDataAlarm ?? true);
    this.dashboard = this.createDashboard(props);
  }

  private createAlarms(stateMachine: IStateMachine, staleDataAlarm: boolean): Alarm[] {
    const action = new SnsAction(this.topic);
    const alarm = (alarmId: string, alarmProps: AlarmProps) => {
      const created = new Alarm(this, alarmId, alarmProps);
      created.addAlarmAction(action);
      return created;
    };
    const alarms = [
      alarm('RunFailedAlarm', {
        alarmDescription:
          'A run failed. Its execution shows the cause; live tables are old or new, never partial.',
        metric: stateMachine.metricFailed({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
      alarm('RunTimedOutAlarm', {
        alarmDescription: "A run hit the state machine's 24 h timeout; its cleanup did not run.",
        metric: stateMachine.metricTimedOut({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      }),
    ];
    // With the schedule disabled (runs by hand only), no run is due, and an alarm that treats
    // "nothing ran" as breaching would stay in ALARM for ever.
    if (!staleDataAlarm) return alarms;
    // No successful run for 26 hourly periods: a daily schedule plus two hours of slack.
    // No data at all (nothing ran) counts as breaching: that is exactly the stale case.
    alarms.push(
      alarm('DataStaleAlarm', {
        alarmDescription:
          'No run succeeded in the last 26 hours: the live tables are more than a day old.',
        metric: stateMachine.metricSucceeded({ period: Duration.hours(1), statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 26,
        datapointsToAlarm: 26,
        treatMissingData: TreatMissingData.BREACHING,
      }),
    );
    return alarms;
  }

  private createDashboard(props: SyncAlarmsProps): Dashboard {
    const { stateMachine } = props;
    const executions: IMetric[] = [
      stateMachine.metricStarted({ statistic: 'Sum', label: 'started' }),
      stateMachine.metricSucceeded({ statistic: 'Sum', label: 'succeeded' }),
      stateMachine.metricFailed({ statistic: 'Sum', label: 'failed' }),
      stateMachine.metricTimedOut({ statistic: 'Sum', label: 'timed out' }),
    ];
    const stepErrors = Object.entries(props.functions ?? {}).map(([name, fn]) =>
      fn.metricErrors({ statistic: 'Sum', label: name }),
    );
    return new Dashboard(this, 'Dashboard', {
      dashboardName: props.dashboardName,
      defaultInterval: Duration.days(7),
      widgets: [
        [
          new GraphWidget({
            title: 'Runs',
            left: executions,
            width: 12,
            period: Duration.hours(1),
          }),
          new GraphWidget({
            title: 'Run duration',
            left: [stateMachine.metricTime({ statistic: 'Maximum', label: 'longest run' })],
            width: 12,
            period: Duration.hours(1),
          }),
        ],
        ...(stepErrors.length > 0
          ? [
              [
                new GraphWidget({
                  title: 'Step errors',
                  left: stepErrors,
                  width: 24,
                  period: Duration.hours(1),
                }),
              ],
            ]
          : []),
      ],
    });
  }
}

function validate(scope: Construct, props: SyncAlarmsProps): void {
  if (!props.topic && !props.encryptionKey) {
    refuseProp(
      scope,
      'encryptionKey',
      'is missing: without `topic`, a new topic is made, and it must be encrypted with a customer-managed key that CloudWatch alarms may use (the AWS-managed aws/sns key does not let them publish).',
    );
  }
  if (props.topic && props.encryptionKey) {
    refuseProp(
      scope,
      'encryptionKey',
      'applies to a new topic only; the given `topic` has its own key.',
    );
  }
  const email = props.alarmEmail;
  if (
    email !== undefined &&
    !Token.isUnresolved(email) &&
    !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)
  ) {
    refuseProp(scope, 'alarmEmail', `is ${JSON.stringify(email)}; give one e-mail address.`);
  }
  if (
    props.dashboardName !== undefined &&
    !Token.isUnresolved(props.dashboardName) &&
    !/^[A-Za-z0-9_-]{1,255}$/.test(props.dashboardName)
  ) {
    refuseProp(
      scope,
      'dashboardName',
      `is ${JSON.stringify(props.dashboardName)}; give letters, digits, hyphens or underscores.`,
    );
  }
}
