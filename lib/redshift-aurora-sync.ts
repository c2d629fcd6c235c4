/**
 * The whole pipeline as one reusable construct, composed of its parts: RunStorage (the run
 * bucket and its key), PipelineFunctions (one Lambda per step with only the access that step
 * needs, and the roles Redshift and Aurora assume), SyncStateMachine (the state machine and
 * its schedule) and SyncAlarms (the alarm topic's alarms and the dashboard). Each part can be
 * used on its own.
 *
 * The construct owns neither database: Redshift and Aurora are referenced by identifier, ARN
 * and secret, and the roles they must assume are printed as outputs with the command that
 * attaches them.
 */
import { CfnOutput } from 'aws-cdk-lib';
import type { IRole, Role } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { NodejsFunction } from 'aws-cdk-lib/aws-lambda-nodejs';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { Schedule } from 'aws-cdk-lib/aws-scheduler';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import type { StateMachine } from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { RuntimeConfig } from '../lambdas/core/config';
import type { PipelineFunctionName } from './function-access';
import {
  type AuroraTarget,
  auroraClusterIdentifier,
  PipelineFunctions,
} from './pipeline-functions';
import { isServerless, type RedshiftTarget } from './redshift-access';
import { RunStorage, type RunStorageProps } from './run-storage';
import { createAlarmTopic, SyncAlarms } from './sync-alarms';
import {
  type PipelineStateMachineOverrides,
  type RunSchedule,
  SyncStateMachine,
} from './sync-state-machine';

export interface RedshiftAuroraSyncProps {
  /** The environment's name, e.g. `prod`; in resource names, logs and the run records. */
  readonly environmentName: string;
  /** Tables, lock, unload and retention settings; embedded in the state machine definition. */
  readonly runtimeConfig: RuntimeConfig;
  /** Where the sources are and how the functions sign in to Redshift. */
  readonly redshift: RedshiftTarget;
  /** The Aurora cluster, its Data API secret and the database of the live tables. */
  readonly aurora: AuroraTarget;
  /**
   * A role already attached to Redshift that UNLOAD runs as (see PipelineFunctions).
   * @default a new role, printed as the UnloadRoleArn output with the command that attaches it
   */
  readonly unloadRole?: IRole;
  /**
   * An existing bucket or key for the run files, the run files' expiry, the access logs bucket.
   * @default a new key, run bucket and access logs bucket (RunStorage's defaults)
   */
  readonly storage?: RunStorageProps;
  /**
   * When a run starts.
   * @default daily at 03:00 UTC, enabled
   */
  readonly schedule?: RunSchedule;
  /**
   * Who is e-mailed when a run fails or data gets stale.
   * @default no subscription: subscribe to the AlarmTopic yourself
   */
  readonly alarmEmail?: string;
  /**
   * The state machine's name. It is fixed (not generated) so that prepare-run may list its
   * executions by ARN without a circular reference.
   * @default `redshift-aurora-sync-<environmentName>`
   */
  readonly stateMachineName?: string;
  /**
   * Overrides of the state machine's props (timeout, role, logs, ...).
   * @default SyncStateMachine's defaults
   */
  readonly stateMachineProps?: PipelineStateMachineOverrides;
  /**
   * How long the functions' and the state machine's logs are kept.
   * @default RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: RetentionDays;
  /**
   * Memory of every function, in MB.
   * @default 512
   */
  readonly memorySizeMb?: number;
  /**
   * Where the handler files are (`<dir>/<name>.ts`, each exporting `handler`).
   * @default `lambdas/handlers` in this repository
   */
  readonly handlersDirectory?: string;
}

/** The state machine's name when `stateMachineName` is not given; `npm run trigger` finds it by this. */
export function stateMachineNameFor(environmentName: string): string {
  return `redshift-aurora-sync-${environmentName}`;
}

export class RedshiftAuroraSync extends Construct {
  readonly storage: RunStorage;
  readonly pipeline: PipelineFunctions;
  readonly runs: SyncStateMachine;
  readonly monitoring: SyncAlarms;

  readonly key: IKey;
  readonly bucket: IBucket;
  /** The role UNLOAD runs as: created here unless `unloadRole` is given. */
  readonly unloadRole: IRole;
  /** The role to attach to the Aurora cluster for feature s3Import. */
  readonly auroraImportRole: Role;
  readonly topic: ITopic;
  readonly functions: Readonly<Record<PipelineFunctionName, NodejsFunction>>;
  readonly stateMachine: StateMachine;
  readonly schedule: Schedule;

  constructor(scope: Construct, id: string, props: RedshiftAuroraSyncProps) {
    super(scope, id);
    const { environmentName } = props;
    const stateMachineName = props.stateMachineName ?? stateMachineNameFor(environmentName);

    this.storage = new RunStorage(this, 'Storage', {
      keyDescription: `redshift-aurora-sync ${environmentName}: run files and alarm topic`,
      ...props.storage,
    });
    this.key = this.storage.key;
    this.bucket = this.storage.bucket;
    // Made here, not in SyncAlarms: fail-run publishes to it, and the alarms watch the state
    // machine that runs fail-run.
    this.topic = createAlarmTopic(this, 'AlarmTopic', {
      encryptionKey: this.key,
      displayName: `redshift-aurora-sync ${environmentName}`,
    });

    this.pipeline = new PipelineFunctions(this, 'Functions', {
      environmentName,
      storage: this.storage,
      redshift: props.redshift,
      aurora: props.aurora,
      unloadRole: props.unloadRole,
      alarmTopic: this.topic,
      stateMachineName,
      tableCount: props.runtimeConfig.tables.length,
      logRetention: props.logRetention,
      memorySizeMb: props.memorySizeMb,
      handlersDirectory: props.handlersDirectory,
    });
    this.functions = this.pipeline.functions;
    this.unloadRole = this.pipeline.unloadRole;
    this.auroraImportRole = this.pipeline.auroraImportRole;

    this.runs = new SyncStateMachine(this, 'StateMachine', {
      functions: this.functions,
      runtimeConfig: props.runtimeConfig,
      stateMachineName,
      schedule: {
        description: `Starts the redshift-aurora-sync ${environmentName} run`,
        ...props.schedule,
      },
      logRetention: props.logRetention,
      stateMachineProps: props.stateMachineProps,
    });
    this.stateMachine = this.runs.stateMachine;
    this.schedule = this.runs.schedule;

    this.monitoring = new SyncAlarms(this, 'Alarms', {
      stateMachine: this.stateMachine,
      functions: this.functions,
      topic: this.topic,
      alarmEmail: props.alarmEmail,
      staleDataAlarm: props.schedule?.enabled ?? true,
      dashboardName: `redshift-aurora-sync-${environmentName}`,
    });

    new CfnOutput(this, 'AuroraImportRoleArn', {
      value: this.auroraImportRole.roleArn,
      description: `Attach to the Aurora cluster for aws_s3 imports: aws rds add-role-to-db-cluster --db-cluster-identifier ${auroraClusterIdentifier(props.aurora.clusterArn)} --feature-name s3Import --role-arn <this value>`,
    });
    if (this.pipeline.unloadRoleCreated) {
      new CfnOutput(this, 'UnloadRoleArn', {
        value: this.unloadRole.roleArn,
        description: `Attach to Redshift so UNLOAD can write the run files: ${
          isServerless(props.redshift)
            ? 'aws redshift-serverless update-namespace --namespace-name <namespace> --iam-roles <existing roles> <this value>'
            : `aws redshift modify-cluster-iam-roles --cluster-identifier ${props.redshift.clusterIdentifier} --add-iam-roles <this value>`
        }; or set aws.unloadRoleArn to a role already attached.`,
      });
    }
    new CfnOutput(this, 'StateMachineArn', {
      value: this.stateMachine.stateMachineArn,
      description: 'Start a run by hand: npm run trigger -- --env <environment>',
    });
    new CfnOutput(this, 'RunBucketName', { value: this.bucket.bucketName });
  }
}
