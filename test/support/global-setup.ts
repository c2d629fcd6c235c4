/**
 * One PostgreSQL server for the whole test run (major from PG_MAJOR, default 17); each test
 * file makes its own database on it (see `freshDatabase` in ./db.ts). The pipeline's role, a
 * non-superuser holding exactly the README's grants, is created once here: roles belong to the
 * whole server.
 */
import type { TestProject } from 'vitest/node';
import { provisionPipelineRole } from '../../local/pipeline-role';
import { startLocalPostgres } from '../../local/postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
    postgresMajor: number;
    pipelineLogin: { user: string; password: string };
  }
}

export const PIPELINE_LOGIN = { user: 'sync_pipeline', password: 'sync_pipeline' };

export default async function setup(project: TestProject) {
  const server = await startLocalPostgres();
  await provisionPipelineRole(server.url, {
    role: PIPELINE_LOGIN.user,
    password: PIPELINE_LOGIN.password,
    database: 'postgres',
  });
  project.provide('postgresUrl', server.url);
  project.provide('postgresMajor', server.major);
  project.provide('pipelineLogin', PIPELINE_LOGIN);
  process.stderr.write(`tests run on PostgreSQL ${server.major}\n`);
  return () => server.stop();
}
