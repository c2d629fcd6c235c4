/**
 * One whole local run (the synthesized state machine over the real steps) between two test
 * databases, as the pipeline's non-superuser role, with the run's connections closed after;
 * and the small readers of its outcome the local-run tests share.
 */
import type pg from 'pg';
import { parseRuntimeConfig } from '../../lambdas/core/config';
import type { RunSummary, TableSummary } from '../../lambdas/pipeline/summary';
import { localDeps } from '../../local/run/deps';
import { runLocalPipeline } from '../../local/run/pipeline';
import type { TestDatabase } from './db';

export interface LocalRunOf {
  /** Stands in for Redshift. */
  readonly source: Pick<TestDatabase, 'url'>;
  /** Stands in for Aurora: the run signs in as its pipeline role, the stand-ins as its superuser. */
  readonly target: Pick<TestDatabase, 'url' | 'pipelineUrl'>;
  readonly s3Dir: string;
  /** The configuration as a file would hold it; parsed here. */
  readonly config: unknown;
  /** The execution input. Default {}. */
  readonly request?: Record<string, unknown>;
  readonly onProgress?: (line: string) => void;
}

export async function runLocally<Summary = RunSummary>(run: LocalRunOf): Promise<Summary> {
  const deps = await localDeps({
    sourceUrl: run.source.url,
    targetUrl: run.target.pipelineUrl,
    adminUrl: run.target.url,
    s3Dir: run.s3Dir,
    onLog: () => {},
  });
  try {
    return (await runLocalPipeline({
      config: parseRuntimeConfig(run.config, 'test config'),
      request: run.request ?? {},
      deps,
      ...(run.onProgress ? { onProgress: run.onProgress } : {}),
    })) as Summary;
  } finally {
    await deps.close();
  }
}

/** The summary's row for `target` (`schema.table`). */
export function tableOf(summary: RunSummary, target: string): TableSummary {
  return summary.tables.find((candidate) => candidate.target === target)!;
}

/** Every row of `relation` as PostgreSQL prints it, ordered by `order`. */
export async function rowsOf(
  client: pg.Client,
  relation: string,
  order: string,
): Promise<string[]> {
  const { rows } = await client.query(`SELECT t::text AS row FROM ${relation} t ORDER BY ${order}`);
  return rows.map((row: { row: string }) => row.row);
}
