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
import type { RunEndpoints } from './databases-and-bucket';

/** The run signs in to the target as its pipeline role, the stand-ins as its superuser. */
export interface LocalRunOf extends RunEndpoints {
  /** The configuration as a file would hold it; parsed here. */
  readonly config: unknown;
  /** The execution input. Default {}. */
  readonly request?: Record<string, unknown>;
  readonly onProgress?: (line: string) => void;
}

export async function runLocally<Summary = RunSummary>(run: LocalRunOf): Promise<Summary> {
  const { config, request, onProgress, ...endpoints } = run;
  const deps = await localDeps({ ...endpoints, onLog: () => {} });
  try {
    return (await runLocalPipeline({
      config: parseRuntimeConfig(config, 'test config'),
      request: request ?? {},
      deps,
      ...(onProgress ? { onProgress } : {}),
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
