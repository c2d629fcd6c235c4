/**
 * One PostgreSQL server for the whole test run; each test file makes its own database on it
 * (see `freshDatabase` in ./db.ts).
 */
import type { TestProject } from 'vitest/node';
import { startLocalPostgres } from '../../local/postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    postgresUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const server = await startLocalPostgres();
  project.provide('postgresUrl', server.url);
  return () => server.stop();
}
