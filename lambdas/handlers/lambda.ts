/**
 * Turns a pipeline step into a Lambda handler: middy with Powertools (structured logs with
 * the Lambda context, EMF metrics flushed per invocation, X-Ray traces of every AWS call),
 * and the AWS-bound ports built once per container. The step gets the state as it came.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { captureLambdaHandler } from '@aws-lambda-powertools/tracer/middleware';
import { RDSDataClient } from '@aws-sdk/client-rds-data';
import { S3Client } from '@aws-sdk/client-s3';
import { SFNClient } from '@aws-sdk/client-sfn';
import { SNSClient } from '@aws-sdk/client-sns';
import middy from '@middy/core';
import { RdsDataSqlClient } from '../adapters/rds-data-sql-client';
import {
  createRedshiftDataClient,
  RedshiftDataWarehouse,
} from '../adapters/redshift-data-warehouse';
import { S3ObjectStore } from '../adapters/s3-object-store';
import { SnsNotifier } from '../adapters/sns-notifier';
import { StepFunctionsRunRegistry } from '../adapters/step-functions-run-registry';
import type { PipelineDeps } from '../pipeline/deps';
import { readEnvironment } from './environment';

const logger = new Logger();
const metrics = new Metrics();
const tracer = new Tracer();

let deps: PipelineDeps | undefined;

/**
 * The SDK clients the ports run on, traced. The Redshift Data API client comes from its
 * adapter's factory, which gives it enough attempts to ride out the Data API's throttling.
 */
export function awsClients() {
  const client = <T>(sdkClient: T): T => tracer.captureAWSv3Client(sdkClient);
  return {
    rdsData: client(new RDSDataClient({})),
    redshiftData: client(createRedshiftDataClient()),
    s3: client(new S3Client({})),
    sfn: client(new SFNClient({})),
    sns: client(new SNSClient({})),
  };
}

function awsDeps(): PipelineDeps {
  if (deps) return deps;
  const environment = readEnvironment();
  const clients = awsClients();
  deps = {
    aurora: new RdsDataSqlClient(clients.rdsData, environment.aurora),
    warehouse: new RedshiftDataWarehouse(clients.redshiftData, environment.redshift),
    objects: new S3ObjectStore(clients.s3),
    runs: new StepFunctionsRunRegistry(clients.sfn),
    notifier: new SnsNotifier(clients.sns, environment.alarmTopicArn),
    log: {
      info: (message, fields) => logger.info(message, { ...fields }),
      warn: (message, fields) => logger.warn(message, { ...fields }),
    },
    metrics: {
      record: (name, unit, value) => metrics.addMetric(name, MetricUnit[unit], value),
    },
    settings: environment.settings,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: Date.now,
  };
  return deps;
}

export type PipelineStep<Output> = (state: unknown, deps: PipelineDeps) => Promise<Output>;

export function lambdaHandler<Output>(step: PipelineStep<Output>) {
  return middy(async (event: unknown): Promise<Output> => step(event, awsDeps()))
    .use(captureLambdaHandler(tracer))
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(logMetrics(metrics));
}
