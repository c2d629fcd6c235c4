/**
 * A pipeline Lambda bundled as the stack bundles it (LAMBDA_BUNDLING), then loaded and
 * invoked: it must start, and its errors must keep the names Step Functions shows as the error
 * type and the state machine's Catch/Retry match on.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { LAMBDA_BUNDLING } from '../lib/pipeline-functions';

const outdir = await mkdtemp(join(tmpdir(), 'lambda-bundle-'));
afterAll(() => rm(outdir, { recursive: true, force: true }));

describe('a bundled pipeline Lambda', () => {
  it('loads, and reports a bad deployment with its error class name intact', async () => {
    const outfile = join(outdir, 'prepare-run.mjs');
    const { metafile } = await build({
      entryPoints: ['lambdas/handlers/prepare-run.ts'],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node22',
      format: LAMBDA_BUNDLING.format,
      minify: LAMBDA_BUNDLING.minify,
      keepNames: LAMBDA_BUNDLING.keepNames,
      mainFields: [...LAMBDA_BUNDLING.mainFields],
      banner: { js: LAMBDA_BUNDLING.banner },
      logLevel: 'silent',
      metafile: true,
    });
    // zod's `z` object reaches every locale (some 260 KB minified); the configuration
    // imports zod as a namespace (`import * as z`) so that esbuild keeps only what it uses.
    const zodLocales = Object.values(metafile.outputs).flatMap((output) =>
      Object.entries(output.inputs)
        .filter(
          ([input, { bytesInOutput }]) => input.includes('zod/v4/locales/') && bytesInOutput > 0,
        )
        .map(([input]) => input),
    );
    expect(zodLocales).toEqual(['node_modules/zod/v4/locales/en.js']);
    const { handler } = (await import(pathToFileURL(outfile).href)) as {
      handler: (event: unknown, context: unknown) => Promise<unknown>;
    };
    // No environment: the function was not deployed by the stack.
    const error = await handler({}, { functionName: 'prepare-run', awsRequestId: 'test' }).catch(
      (thrown: Error) => thrown,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('ConfigError');
    expect((error as Error).message).toMatch(
      /^environment variables (\w+, )*RUN_BUCKET(, \w+)* are not set; .* Redeploy with cdk deploy\.$/,
    );
    // Deployed: a state that is not the step's is refused by the same parse as the local run's.
    const deployed = {
      AWS_REGION: 'eu-west-1',
      ENVIRONMENT_NAME: 'prod',
      RUN_BUCKET: 'sync-runs',
      UNLOAD_ROLE_ARN: 'arn:aws:iam::123456789012:role/unload',
      AURORA_CLUSTER_ARN: 'arn:aws:rds:eu-west-1:123456789012:cluster:app',
      AURORA_SECRET_ARN: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aurora',
      AURORA_DATABASE: 'app',
      REDSHIFT_DATABASE: 'analytics',
      REDSHIFT_WORKGROUP_NAME: 'analytics',
      ALARM_TOPIC_ARN: 'arn:aws:sns:eu-west-1:123456789012:alarms',
    };
    const saved = { ...process.env };
    Object.assign(process.env, deployed);
    try {
      const refused = await handler(
        { config: {}, request: {}, context: { executionName: 'run-1' } },
        { functionName: 'prepare-run', awsRequestId: 'test' },
      ).catch((thrown: Error) => thrown);
      expect((refused as Error).name).toBe('StepInputError');
      expect((refused as Error).message).toMatch(
        /^\$\.context is not the execution's context \(\$\.context\.executionArn: .*\): the step input must come from "Load the configuration"\.$/,
      );
    } finally {
      for (const key of Object.keys(deployed)) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});
