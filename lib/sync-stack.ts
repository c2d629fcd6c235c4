/**
 * One environment's stack: `RedshiftAuroraSync-<env>`, deployed to the account and region its
 * config file names, holding the whole pipeline. The config file's settings (AwsSettings) are
 * turned into the construct's props here: secrets, roles and durations as CDK types.
 */
import { type CfnElement, Duration, Stack, type StackProps, Tags } from 'aws-cdk-lib';
import { Role } from 'aws-cdk-lib/aws-iam';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct, IConstruct } from 'constructs';
import type { AwsSettings, RuntimeConfig } from '../lambdas/core/config';
import { PipelineFunctions } from './pipeline-functions';
import type { RedshiftTarget } from './redshift-access';
import { RedshiftAuroraSync } from './redshift-aurora-sync';
import { RunStorage } from './run-storage';
import { checkScheduleAgainstDaylightSaving } from './schedule-daylight-saving';
import { SyncAlarms } from './sync-alarms';
import { SyncStateMachine } from './sync-state-machine';

export interface SyncStackProps extends StackProps {
  /** The environment's name: the config file `config/<name>.json` it was built from. */
  readonly environmentName: string;
  readonly runtimeConfig: RuntimeConfig;
  readonly aws: AwsSettings;
}

export function stackNameFor(environmentName: string): string {
  return `RedshiftAuroraSync-${environmentName}`;
}

export class SyncStack extends Stack {
  readonly sync: RedshiftAuroraSync;

  constructor(scope: Construct, props: SyncStackProps) {
    const { environmentName, runtimeConfig, aws, ...stackProps } = props;
    super(scope, stackNameFor(environmentName), {
      description: `Moves tables from Redshift into Aurora PostgreSQL (environment ${environmentName})`,
      env: { account: aws.account, region: aws.region },
      ...stackProps,
    });
    Tags.of(this).add('application', 'redshift-aurora-sync');
    Tags.of(this).add('environment', environmentName);
    // Checked here too, so that the error names the config file's field.
    checkScheduleAgainstDaylightSaving(aws.schedule.expression, aws.schedule.timeZone, {
      field: 'aws.schedule.expression',
    });
    this.sync = new RedshiftAuroraSync(this, 'Sync', {
      environmentName,
      runtimeConfig,
      redshift: this.redshiftTarget(aws.redshift),
      aurora: {
        clusterArn: aws.aurora.clusterArn,
        secret: secretFromArn(this, 'AuroraSecret', aws.aurora.secretArn),
        database: aws.aurora.database,
      },
      // The role's own policy is its owner's: the run bucket's and the key's policies name it.
      unloadRole:
        aws.unloadRoleArn === undefined
          ? undefined
          : Role.fromRoleArn(this, 'UnloadRole', aws.unloadRoleArn, {
              mutable: false,
              addGrantsToResources: true,
            }),
      storage: { runFilesExpiration: Duration.days(runtimeConfig.retention.runFilesDays) },
      schedule: aws.schedule,
      alarmEmail: aws.alarmEmail,
    });
  }

  private redshiftTarget(redshift: AwsSettings['redshift']): RedshiftTarget {
    const secret = (secretArn: string) => secretFromArn(this, 'RedshiftSecret', secretArn);
    if ('workgroupName' in redshift) {
      const { secretArn, ...rest } = redshift;
      return secretArn ? { ...rest, secret: secret(secretArn) } : rest;
    }
    if ('secretArn' in redshift) {
      const { secretArn, ...rest } = redshift;
      return { ...rest, secret: secret(secretArn) };
    }
    return redshift;
  }

  /**
   * Keeps the logical IDs the resources had when RedshiftAuroraSync was one construct: the
   * path segment of each part (Storage, Functions, StateMachine, Alarms) is left out, so an
   * update of a deployed stack changes no resource's logical ID. Without this, CloudFormation
   * would replace every resource, and the state machine's and the dashboard's fixed names
   * would collide with the ones being replaced. Stack's own allocation reads only the
   * element's scopes and stack, so it is handed the scopes without the parts;
   * test/cdk-stack.test.ts pins the resulting IDs.
   */
  protected override allocateLogicalId(element: CfnElement): string {
    const scopes = element.node.scopes.filter((scope) => !isCompositionPart(scope));
    return super.allocateLogicalId({ node: { scopes }, stack: this } as unknown as CfnElement);
  }
}

/**
 * The secret a config file names. Secrets Manager appends six random characters to a
 * secret's name in its ARN; an ARN without them (a partial ARN) is granted with `-??????` in
 * its place, which is how IAM matches it (https://docs.aws.amazon.com/secretsmanager/latest/userguide/auth-and-access_iam-policies.html).
 * The same test as CDK's for a complete ARN.
 */
function secretFromArn(scope: Construct, id: string, secretArn: string): ISecret {
  return /-[a-z0-9]{6}$/i.test(secretArn)
    ? Secret.fromSecretCompleteArn(scope, id, secretArn)
    : Secret.fromSecretPartialArn(scope, id, secretArn);
}

function isCompositionPart(scope: IConstruct): boolean {
  return (
    scope.node.scope instanceof RedshiftAuroraSync &&
    (scope instanceof RunStorage ||
      scope instanceof PipelineFunctions ||
      scope instanceof SyncStateMachine ||
      scope instanceof SyncAlarms)
  );
}
