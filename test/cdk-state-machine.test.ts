import { readFileSync } from 'node:fs';
import { Duration, type Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { type IFunction, Function as LambdaFunction } from 'aws-cdk-lib/aws-lambda';
import { LogGroup } from 'aws-cdk-lib/aws-logs';
import { LogLevel } from 'aws-cdk-lib/aws-stepfunctions';
import { afterAll, describe, expect, it } from 'vitest';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { PIPELINE_FUNCTIONS, type PipelineFunctionName } from '../lib/function-access';
import { SyncStateMachine, type SyncStateMachineProps } from '../lib/sync-state-machine';
import { nagFindings, removeTestOutput, testStack } from './support/cdk';

afterAll(removeTestOutput);

const RUNTIME_CONFIG = parseRuntimeConfig(
  JSON.parse(readFileSync('config/example.json', 'utf8')),
  'config/example.json',
);

/** The pipeline's functions as imported ones: the state machine needs only their ARNs. */
function importedFunctions(stack: Stack): Record<PipelineFunctionName, IFunction> {
  return Object.fromEntries(
    PIPELINE_FUNCTIONS.map((name) => [
      name,
      LambdaFunction.fromFunctionArn(
        stack,
        `Fn-${name}`,
        `arn:aws:lambda:eu-west-1:123456789012:function:sync-${name}`,
      ),
    ]),
  ) as Record<PipelineFunctionName, IFunction>;
}

/** The definition: imported functions' ARNs are literals, so it is one JSON string. */
function definitionOf(template: Template): { TimeoutSeconds?: number } {
  const [stateMachine] = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  return JSON.parse(stateMachine!.Properties.DefinitionString as string);
}

function build(props: Partial<SyncStateMachineProps> = {}) {
  const { app, stack } = testStack();
  const part = new SyncStateMachine(stack, 'Runs', {
    functions: importedFunctions(stack),
    runtimeConfig: RUNTIME_CONFIG,
    ...props,
  });
  return { app, stack, part, template: Template.fromStack(stack) };
}

describe('SyncStateMachine', () => {
  it('runs Standard, traced, logged without execution data, cut off after 24 h, started daily at 03:00 UTC', () => {
    const { app, template } = build();
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineType: 'STANDARD',
      StateMachineName: Match.absent(),
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: false }),
    });
    const definition = definitionOf(template);
    expect(definition.TimeoutSeconds).toBe(86_400);
    expect(JSON.stringify(definition)).toContain(
      'arn:aws:lambda:eu-west-1:123456789012:function:sync-prepare-run',
    );
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'UTC',
      State: 'ENABLED',
      Target: Match.objectLike({ Input: '{}' }),
    });
    template.resourceCountIs('AWS::Logs::LogGroup', 1);
    expect(nagFindings(app)).toEqual([]);
  });

  it('takes a name, a disabled schedule in another zone and overrides of the state machine props', () => {
    const { template } = build({
      stateMachineName: 'sync-test',
      schedule: { expression: 'rate(12 hours)', timeZone: 'America/New_York', enabled: false },
      stateMachineProps: { timeout: Duration.hours(6), tracingEnabled: false },
    });
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'sync-test',
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: false },
    });
    expect(definitionOf(template).TimeoutSeconds).toBe(6 * 3600);
    template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'rate(12 hours)',
      ScheduleExpressionTimezone: 'America/New_York',
      State: 'DISABLED',
    });
  });

  it('logs to a log group given in stateMachineProps.logs instead of making one', () => {
    const { stack } = testStack();
    const destination = new LogGroup(stack, 'TeamLogs');
    const part = new SyncStateMachine(stack, 'Runs', {
      functions: importedFunctions(stack),
      runtimeConfig: RUNTIME_CONFIG,
      stateMachineProps: { logs: { destination, level: LogLevel.ERROR } },
    });
    expect(part.logGroup).toBeUndefined();
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Logs::LogGroup', 1);
    template.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      LoggingConfiguration: Match.objectLike({ Level: 'ERROR' }),
    });
  });

  it('refuses, naming the prop, a schedule it cannot keep and a function missing', () => {
    expect(() =>
      build({ schedule: { expression: 'cron(30 2 * * ? *)', timeZone: 'Europe/Berlin' } }),
    ).toThrow(
      /PartTest\/Runs: schedule\.expression "cron\(30 2 \* \* \? \*\)" in Europe\/Berlin falls in a daylight-saving change/,
    );
    expect(() => build({ schedule: { expression: 'daily at 3' } })).toThrow(
      /PartTest\/Runs: schedule\.expression is "daily at 3"; give cron\(\.\.\.\), rate\(\.\.\.\) or at\(\.\.\.\)/,
    );
    expect(() => build({ schedule: { timeZone: 'Europe/Atlantis' } })).toThrow(
      /PartTest\/Runs: schedule\.timeZone is "Europe\/Atlantis"/,
    );
    expect(() => build({ stateMachineName: 'sync test' })).toThrow(
      /PartTest\/Runs: stateMachineName is "sync test"/,
    );
    const { stack } = testStack();
    const { 'swap-tables': _, ...withoutSwap } = importedFunctions(stack);
    expect(
      () =>
        new SyncStateMachine(stack, 'Runs', {
          functions: withoutSwap as Record<PipelineFunctionName, IFunction>,
          runtimeConfig: RUNTIME_CONFIG,
        }),
    ).toThrow(/PartTest\/Runs: functions has no function for swap-tables/);
  });
});
