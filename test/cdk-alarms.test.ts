import type { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { afterAll, describe, expect, it } from 'vitest';
import { createAlarmTopic, SyncAlarms, type SyncAlarmsProps } from '../lib/sync-alarms';
import { nagFindings, removeTestOutput, type Statement, testStack } from './support/cdk';

afterAll(removeTestOutput);

const STATE_MACHINE_ARN = 'arn:aws:states:eu-west-1:123456789012:stateMachine:sync-test';

function build(props: (stack: Stack) => Partial<SyncAlarmsProps>) {
  const { app, stack } = testStack();
  const part = new SyncAlarms(stack, 'Alarms', {
    stateMachine: StateMachine.fromStateMachineArn(stack, 'Runs', STATE_MACHINE_ARN),
    ...props(stack),
  });
  const template = Template.fromStack(stack);
  const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map(
    (alarm) => alarm.Properties,
  );
  return { app, stack, part, template, alarms };
}

const newKey = (stack: Stack) => new Key(stack, 'Key', { enableKeyRotation: true });

describe('SyncAlarms', () => {
  it('e-mails failed and timed-out runs and a day without success through a new encrypted topic CloudWatch may use', () => {
    const { app, stack, part, template, alarms } = build((stack) => ({
      encryptionKey: newKey(stack),
      alarmEmail: 'data-platform@example.com',
    }));
    expect(alarms.map((alarm) => alarm.MetricName).sort()).toEqual([
      'ExecutionsFailed',
      'ExecutionsSucceeded',
      'ExecutionsTimedOut',
    ]);
    const topic = { Ref: stack.getLogicalId(part.topic.node.defaultChild as never) };
    for (const alarm of alarms) expect(alarm.AlarmActions).toEqual([topic]);
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'data-platform@example.com',
    });
    const [key] = Object.values(template.findResources('AWS::KMS::Key'));
    const cloudwatch = (key!.Properties.KeyPolicy.Statement as Statement[]).filter(
      (statement) =>
        JSON.stringify(statement.Principal) ===
        JSON.stringify({ Service: 'cloudwatch.amazonaws.com' }),
    );
    expect(cloudwatch.map((statement) => statement.Action)).toEqual([
      ['kms:Decrypt', 'kms:GenerateDataKey'],
    ]);
    expect(nagFindings(app)).toEqual([]);
  });

  it('subscribes no one without alarmEmail, and raises no stale-data alarm when runs start by hand', () => {
    const { template, alarms } = build((stack) => ({
      topic: createAlarmTopic(stack, 'Topic', { encryptionKey: newKey(stack) }),
      staleDataAlarm: false,
    }));
    template.resourceCountIs('AWS::SNS::Subscription', 0);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    expect(alarms.map((alarm) => alarm.MetricName).sort()).toEqual([
      'ExecutionsFailed',
      'ExecutionsTimedOut',
    ]);
  });

  it('graphs each function’s errors by name on the dashboard only when functions are given', () => {
    const withFunctions = build((stack) => ({
      encryptionKey: newKey(stack),
      dashboardName: 'sync-test',
      functions: {
        'swap-tables': LambdaFunction.fromFunctionArn(
          stack,
          'Swap',
          'arn:aws:lambda:eu-west-1:123456789012:function:sync-swap-tables',
        ),
      },
    }));
    const body = (template: Template) =>
      JSON.stringify(
        Object.values(template.findResources('AWS::CloudWatch::Dashboard'))[0]!.Properties,
      );
    withFunctions.template.hasResourceProperties('AWS::CloudWatch::Dashboard', {
      DashboardName: 'sync-test',
    });
    expect(body(withFunctions.template)).toContain('Step errors');
    expect(body(withFunctions.template)).toContain('swap-tables');
    const without = build((stack) => ({ encryptionKey: newKey(stack) }));
    expect(body(without.template)).not.toContain('Step errors');
  });

  it('refuses, naming the prop, a topic without a key, a key with a topic and an address that is none', () => {
    expect(() => build(() => ({}))).toThrow(
      /PartTest\/Alarms: encryptionKey is missing: without `topic`, a new topic is made/,
    );
    expect(() =>
      build((stack) => {
        const key = newKey(stack);
        return {
          encryptionKey: key,
          topic: createAlarmTopic(stack, 'Topic', { encryptionKey: key }),
        };
      }),
    ).toThrow(/PartTest\/Alarms: encryptionKey applies to a new topic only/);
    expect(() =>
      build((stack) => ({ encryptionKey: newKey(stack), alarmEmail: 'data-platform' })),
    ).toThrow(/PartTest\/Alarms: alarmEmail is "data-platform"; give one e-mail address/);
  });
});
