/**
 * What a daily run of 10 tables costs in AWS charges the pipeline itself causes, computed
 * from a run's counts: the synthesized state machine runs through the AWS contract harness
 * (test/aws-contract/harness.ts: every handler real, every AWS call answered by the fakes over an
 * embedded PostgreSQL), which counts state transitions, Lambda invocations with their memory
 * and measured duration, SDK calls by operation and S3 requests by action. Those counts are
 * priced at the us-east-1 list prices below. Not included: Redshift and Aurora compute and
 * storage (the statements' own work), and the free tiers.
 *
 *   npm run bench:cost                          # 10 tables of 10,000 rows, 2 slices
 *   npm run bench:cost -- --rows 1000 --slices 4
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseRuntimeConfig } from '../lambdas/core/config';
import { type PipelineFunctionName, timeoutSecondsFor } from '../lib/function-access';
import { STATE } from '../lib/pipeline-definition';
import { provisionPipelineRole, urlAs } from '../local/pipeline-role';
import { type LocalPostgres, startLocalPostgres } from '../local/postgres';
import { AwsHarness, type HarnessRun } from '../test/aws-contract/harness';
import { connect, fmt, log, machineDescription, markdownTable, textTable } from './common';

const TABLES = 10;
const LOGIN = { user: 'bench_pipeline', password: 'bench_pipeline' };

/**
 * us-east-1 list prices, read 2026-11-29. The stack's functions are arm64
 * (lib/pipeline-functions.ts), so Lambda's arm price applies.
 */
const PRICES = {
  stateTransition: {
    usd: 0.025 / 1000,
    unit: 'state transition (Standard; retries count)',
    source: 'https://aws.amazon.com/step-functions/pricing/',
  },
  lambdaRequest: {
    usd: 0.2 / 1_000_000,
    unit: 'Lambda request',
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  lambdaGbSecond: {
    usd: 0.0000133334,
    unit: 'Lambda GB-second (arm64, billed per 1 ms)',
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  rdsDataRequest: {
    usd: 0.35 / 1_000_000,
    unit: 'RDS Data API request (per 32 KB of payload; not confirmed from the stored docs: check the page)',
    source: 'https://aws.amazon.com/rds/aurora/pricing/',
  },
  redshiftDataRequest: {
    usd: 0,
    unit: 'Redshift Data API call (no per-call price listed; the statements use the cluster)',
    source: 'https://aws.amazon.com/redshift/pricing/',
  },
  s3Tier1Request: {
    usd: 0.005 / 1000,
    unit: 'S3 Standard PUT, COPY, POST or LIST request',
    source: 'https://aws.amazon.com/s3/pricing/',
  },
  s3Tier2Request: {
    usd: 0.0004 / 1000,
    unit: 'S3 Standard GET or HEAD request',
    source: 'https://aws.amazon.com/s3/pricing/',
  },
} as const;

interface Usage {
  readonly item: string;
  readonly count: number;
  readonly price: keyof typeof PRICES;
}

function sum(record: Readonly<Record<string, number>>, match: (key: string) => boolean): number {
  return Object.entries(record)
    .filter(([key]) => match(key))
    .reduce((total, [, count]) => total + count, 0);
}

/** GB-seconds as Lambda bills them: memory in GB times the duration rounded up to 1 ms. */
function gbSeconds(
  run: HarnessRun,
  duration: (handler: PipelineFunctionName, ms: number) => number,
) {
  return run.invocations.reduce(
    (total, { handler, memoryMb, durationMs }) =>
      total + (memoryMb / 1024) * (Math.ceil(duration(handler, durationMs ?? 0)) / 1000),
    0,
  );
}

function usageOf(run: HarnessRun, gbs: number): Usage[] {
  const { sdkCalls, s3Requests } = run;
  return [
    {
      item: 'Step Functions state transitions',
      count: run.stateTransitions,
      price: 'stateTransition',
    },
    { item: 'Lambda invocations', count: run.invocations.length, price: 'lambdaRequest' },
    { item: 'Lambda GB-seconds', count: gbs, price: 'lambdaGbSecond' },
    {
      item: 'RDS Data API calls',
      count: sum(sdkCalls, (key) => key.startsWith('rds-data:')),
      price: 'rdsDataRequest',
    },
    {
      item: 'Redshift Data API calls',
      count: sum(sdkCalls, (key) => key.startsWith('redshift-data:')),
      price: 'redshiftDataRequest',
    },
    {
      item: 'S3 PUT + LIST requests',
      count: (s3Requests['s3:PutObject'] ?? 0) + (s3Requests['s3:ListBucket'] ?? 0),
      price: 's3Tier1Request',
    },
    {
      item: 'S3 GET + HEAD requests',
      count: s3Requests['s3:GetObject'] ?? 0,
      price: 's3Tier2Request',
    },
  ];
}

function costRows(usage: readonly Usage[]): { rows: string[][]; total: number } {
  let total = 0;
  const rows = usage.map(({ item, count, price }) => {
    const usd = count * PRICES[price].usd;
    total += usd;
    return [
      item,
      Number.isInteger(count) ? String(count) : fmt(count, 2),
      `$${usd.toFixed(6)}`,
      `$${(usd * 30).toFixed(4)}`,
    ];
  });
  rows.push(['total', '', `$${total.toFixed(6)}`, `$${(total * 30).toFixed(4)}`]);
  return { rows, total };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '10000' },
      slices: { type: 'string', default: '2' },
    },
  });
  const rowsPerTable = Number(values.rows);
  const slices = Number(values.slices);
  if (
    !Number.isInteger(rowsPerTable) ||
    rowsPerTable < 1 ||
    !Number.isInteger(slices) ||
    slices < 1
  ) {
    throw new Error('--rows and --slices take whole numbers from 1');
  }
  let server: LocalPostgres | undefined;
  let harness: AwsHarness | undefined;
  let s3Dir: string | undefined;
  try {
    log('starting embedded PostgreSQL');
    server = await startLocalPostgres();
    const sourceUrl = await server.createDatabase('cost_source');
    const targetUrl = await server.createDatabase('cost_target');
    await provisionPipelineRole(targetUrl, {
      role: LOGIN.user,
      password: LOGIN.password,
      database: decodeURIComponent(new URL(targetUrl).pathname.slice(1)),
    });
    s3Dir = await mkdtemp(join(tmpdir(), 'bench-cost-s3-'));
    await chmod(s3Dir, 0o755);
    const names = Array.from({ length: TABLES }, (_, i) => `t${String(i + 1).padStart(2, '0')}`);
    log(`creating ${TABLES} source tables of ${rowsPerTable} rows`);
    const source = await connect(sourceUrl, 'bench-cost-source');
    await source.query('CREATE SCHEMA sales');
    for (const name of names) {
      await source.query(`CREATE TABLE sales.${name} (id bigint PRIMARY KEY, note text, amount numeric(12,2), at timestamptz);
        INSERT INTO sales.${name} SELECT g, 'row ' || g, g / 100.0, timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, ${rowsPerTable}) g`);
    }
    await source.end();
    const target = await connect(targetUrl, 'bench-cost-target');
    await target.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${LOGIN.user}`);
    await target.end();
    const runtimeConfig = parseRuntimeConfig(
      { tables: names.map((name) => ({ source: `sales.${name}`, target: `public.${name}` })) },
      'bench:cost config',
    );
    harness = await AwsHarness.start({
      runtimeConfig,
      sourceUrl,
      targetUrl: urlAs(targetUrl, LOGIN),
      adminUrl: targetUrl,
      s3Dir,
      redshiftSlices: slices,
      // The emulated unload finishes in milliseconds; the Wait's 30 s would only be slept.
      waitTimeOverrides: { [STATE.waitForUnload]: 100, [STATE.waitForBlockers]: 500 },
    });
    log('first run (creates the live tables)');
    const first = await harness.run({});
    if (first.outcome.status !== 'SUCCEEDED')
      throw new Error(`the first run ${first.outcome.status}`);
    log('second run: the daily run that is measured');
    const run = await harness.run({});
    if (run.outcome.status !== 'SUCCEEDED')
      throw new Error(`the measured run ${run.outcome.status}`);

    const measured = gbSeconds(run, (_, ms) => ms);
    const ceiling = gbSeconds(run, (handler) => timeoutSecondsFor(handler, TABLES) * 1000);
    const usage = usageOf(run, measured);
    const headers = ['item', 'count per run', 'USD per run', 'USD per 30 runs'];
    const { rows } = costRows(usage);
    const ceilingRows = costRows(usageOf(run, ceiling)).rows;
    const byHandler = new Map<string, { n: number; ms: number }>();
    for (const { handler, durationMs } of run.invocations) {
      const entry = byHandler.get(handler) ?? { n: 0, ms: 0 };
      byHandler.set(handler, { n: entry.n + 1, ms: entry.ms + (durationMs ?? 0) });
    }
    const handlerRows = [...byHandler].map(([handler, { n, ms }]) => [
      handler,
      String(n),
      fmt(ms / n),
      String(timeoutSecondsFor(handler as PipelineFunctionName, TABLES)),
    ]);
    const callRows = Object.entries({ ...run.sdkCalls, ...prefixed(run.s3Requests) })
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([key, count]) => [key, String(count)]);
    const priceRows = Object.values(PRICES).map((p) => [
      p.unit,
      `$${Number((p.usd * 1_000_000).toPrecision(6))}`,
      p.source,
    ]);
    const caption = `${TABLES} tables of ${rowsPerTable} rows (bigint, text, numeric, timestamptz), UNLOAD on ${slices} slices, a smooth daily run (the second; the first created the live tables); memory ${run.invocations[0]?.memoryMb} MB per function from the synthesized template`;
    for (const [title, h, r] of [
      [`Cost of one run: ${caption}; Lambda at the durations measured here`, headers, rows],
      [
        'The same run with every invocation lasting its function’s whole timeout: the ceiling',
        headers,
        ceilingRows,
      ],
      [
        'Invocations: mean measured duration (ms) and the synthesized timeout (s)',
        ['function', 'invocations', 'mean ms', 'timeout s'],
        handlerRows,
      ],
      ['Calls and requests counted', ['operation', 'count'], callRows],
      ['Prices (us-east-1, read 2026-11-29)', ['unit', 'USD per million', 'source'], priceRows],
    ] as const) {
      console.log(`\n${title}\n${textTable(h, r)}`);
      if (process.env.BENCH_MARKDOWN) console.log(`\n${markdownTable(h, r)}`);
    }
    console.log(
      `\nhistory events ${run.historyEvents}; durations measured in process on ${machineDescription()}, handlers against the harness's fakes over embedded PostgreSQL ${server.major}`,
    );
  } finally {
    await harness?.close();
    await server?.stop();
    if (s3Dir) await rm(s3Dir, { recursive: true, force: true });
  }
}

function prefixed(requests: Readonly<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(requests).map(([action, n]) => [`authorized ${action}`, n]),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
