/**
 * What the pipeline's steps need from the world, as ports. The Lambda handlers bind them to
 * AWS (RDS Data API, Redshift Data API, S3, Step Functions, SNS); the local run binds them to
 * PostgreSQL, the UNLOAD emulator and a folder. The steps themselves are the same code.
 */
import type { TransactionalSqlClient } from '../core/sql-client';
import type { ObjectStore, Warehouse } from '../core/transfer/ports';

/**
 * What became of one execution: `running`; `ended` (succeeded, failed, stopped, timed out);
 * `unknown` when no such execution can be found.
 */
export type ExecutionStatus = 'running' | 'ended' | 'unknown';

/** Whether the run holding the environment's run lease is still going. */
export interface RunRegistry {
  executionStatus(executionArn: string): Promise<ExecutionStatus>;
}

/** Tells people about a failed run (SNS in AWS, the terminal locally). */
export interface Notifier {
  notify(subject: string, message: string): Promise<void>;
}

export type LogFields = Readonly<Record<string, unknown>>;

export interface PipelineLog {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
}

export interface PipelineMetrics {
  /** One data point; `unit` as CloudWatch names it (Count, Seconds, Milliseconds). */
  record(name: string, unit: 'Count' | 'Seconds' | 'Milliseconds', value: number): void;
}

/** Deployment settings: where run files go and how Redshift writes them. */
export interface PipelineSettings {
  readonly environment: string;
  readonly bucket: string;
  /** The role Redshift assumes to write to the bucket. */
  readonly unloadRoleArn: string;
  /** The KMS key UNLOAD encrypts with; none locally. */
  readonly kmsKeyArn?: string;
  /** The bucket's region, for aws_s3 and for UNLOAD's REGION when it differs from Redshift's. */
  readonly region: string;
}

export interface PipelineDeps {
  readonly aurora: TransactionalSqlClient;
  readonly warehouse: Warehouse;
  readonly objects: ObjectStore;
  readonly runs: RunRegistry;
  readonly notifier: Notifier;
  readonly log: PipelineLog;
  readonly metrics: PipelineMetrics;
  readonly settings: PipelineSettings;
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => number;
}
