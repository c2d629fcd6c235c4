/**
 * RunRegistry for local runs: a small file per run in progress under `<s3Dir>/.running/`,
 * holding its process id. It answers for the run lease from its own records: a run whose file
 * is gone, or whose process is gone (killed), has ended.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecutionStatus, RunRegistry } from '../../lambdas/pipeline/deps';

interface RunningFile {
  readonly runId: string;
  readonly pid: number;
  readonly startedAt: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class LocalRunRegistry implements RunRegistry {
  private readonly folder: string;

  constructor(s3Dir: string) {
    this.folder = join(s3Dir, '.running');
  }

  /** Records this run, and clears the files of runs whose process is gone (killed). */
  async register(runId: string, startedAt: number): Promise<void> {
    await mkdir(this.folder, { recursive: true });
    for (const name of await readdir(this.folder)) {
      const entry = await readFile(join(this.folder, name), 'utf8')
        .then((text) => JSON.parse(text) as RunningFile)
        .catch(() => null);
      if (entry === null || !alive(entry.pid)) await rm(join(this.folder, name), { force: true });
    }
    const entry: RunningFile = { runId, pid: process.pid, startedAt };
    await writeFile(join(this.folder, `${runId}.json`), JSON.stringify(entry));
  }

  async unregister(runId: string): Promise<void> {
    await rm(join(this.folder, `${runId}.json`), { force: true });
  }

  /** A local execution's ARN ends with its run id (local/run/definition.ts). */
  async executionStatus(executionArn: string): Promise<ExecutionStatus> {
    const runId = executionArn.slice(executionArn.lastIndexOf(':') + 1);
    let entry: RunningFile;
    try {
      entry = JSON.parse(await readFile(join(this.folder, `${runId}.json`), 'utf8')) as RunningFile;
    } catch {
      return 'ended';
    }
    if (alive(entry.pid)) return 'running';
    // Left by a killed run: clear it, so that a later process with the same id is not taken for it.
    await rm(join(this.folder, `${runId}.json`), { force: true });
    return 'ended';
  }
}
