/**
 * RunRegistry for local runs: a small file per run in progress under `<s3Dir>/.running/`,
 * holding its process id. A file whose process is gone was left by a killed run and is
 * cleared, so a kill never blocks the next run.
 */
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunRegistry } from '../../lambdas/pipeline/deps';

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

  async register(runId: string, startedAt: number): Promise<void> {
    await mkdir(this.folder, { recursive: true });
    const entry: RunningFile = { runId, pid: process.pid, startedAt };
    await writeFile(join(this.folder, `${runId}.json`), JSON.stringify(entry));
  }

  async unregister(runId: string): Promise<void> {
    await rm(join(this.folder, `${runId}.json`), { force: true });
  }

  async othersInProgress(runId: string): Promise<string[]> {
    let names: string[];
    try {
      names = await readdir(this.folder);
    } catch {
      return [];
    }
    const entries: RunningFile[] = [];
    for (const name of names) {
      const path = join(this.folder, name);
      try {
        entries.push(JSON.parse(await readFile(path, 'utf8')) as RunningFile);
      } catch {
        await rm(path, { force: true });
      }
    }
    const own = entries.find((entry) => entry.runId === runId);
    const others: RunningFile[] = [];
    for (const entry of entries) {
      if (entry.runId === runId) continue;
      if (!alive(entry.pid)) {
        await rm(join(this.folder, `${entry.runId}.json`), { force: true });
        continue;
      }
      const before =
        !own ||
        entry.startedAt < own.startedAt ||
        (entry.startedAt === own.startedAt && entry.runId < runId);
      if (before) others.push(entry);
    }
    return others
      .sort((a, b) => a.startedAt - b.startedAt)
      .map((entry) => `${entry.runId} (process ${entry.pid})`);
  }
}
