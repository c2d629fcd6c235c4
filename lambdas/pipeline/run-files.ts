/**
 * The run's folder in the bucket, `runs/<runId>/`: UNLOAD's data files and manifests per
 * table, and what the steps hand each other that is too big for the state (the run's setup, the
 * column transfers, the source figures, each table's list of data files: the state carries
 * only names and counts, so its size does not grow with the files). Deleted when the run ends; a lifecycle rule expires
 * whatever a killed run left.
 */
import * as z from 'zod';
import { count, pathText } from '../core/config-fields';
import { SyncError } from '../core/errors';
import type { QualifiedName } from '../core/identifiers';
import { tableIncrement } from '../core/increment/mode';
import { runScopedName } from '../core/swap/plan';
import type { ObjectStore } from '../core/transfer/ports';
import {
  type DataFile,
  dataFile,
  type TableFigures,
  tableFigures,
  tableTransfer,
} from '../core/transfer/types';
import { sessionStatement } from '../core/unload/statement';

export const RUNS_PREFIX = 'runs/';

export function runPrefix(runId: string): string {
  return `${RUNS_PREFIX}${runId}/`;
}

// Each run file is parsed when read back; unknown keys are dropped, as in the state (state.ts).
/** What "Prepare the run" fixed for the run: the configuration as it was, the tables chosen. */
const runSetup = z.object({
  runId: z.string(),
  environment: z.string(),
  startedAt: z.string(),
  dryRun: z.boolean(),
  maxWaitSeconds: count,
  /** Incremental tables are taken whole (the execution input's fullRefresh). */
  fullRefresh: z.boolean(),
  /** runtimeConfigJson of the configuration the run started with (parseRuntimeConfig reads it). */
  config: z.unknown(),
  /** Targets chosen for this run, as configured. */
  targets: z.array(z.string()),
});
export type RunSetup = z.infer<typeof runSetup>;

/**
 * Per transfer, or null. Absent in records written before the field, by a run in progress
 * across a deploy: read as empty, which every reader takes as null for each table.
 */
const perTransfer = <T extends z.ZodType>(item: T) =>
  z.array(item.nullable()).readonly().default([]);

/** What "Unload the tables from Redshift" decided, for the steps after it. */
const unloadRecord = z.object({
  submittedAt: z.string(),
  transfers: z.array(tableTransfer),
  /** The calls of the unload session, in order (buildUnloadSession). */
  batches: z.array(z.array(z.string()).readonly()).readonly(),
  /** Per batch, the index of the statement reading the transaction's start. */
  transactionStartIndex: z.array(count).readonly(),
  /** Per transfer, where its figures query is. */
  figures: z.array(sessionStatement).readonly(),
  /** Per transfer, where its oversize count is, or null (buildUnloadSession). */
  oversize: perTransfer(sessionStatement),
  /** Per transfer, the source columns the target does not have (not synced). */
  unsyncedColumns: z.array(z.array(z.string())),
  /** Per transfer, for a delta: where its whole-table figures query is. */
  wholeFigures: perTransfer(sessionStatement),
  /** Per transfer: full or incremental and why, for an incremental table; null otherwise. */
  increments: perTransfer(tableIncrement),
  /** Per transfer, for a delta that reconciles deletes: where its key UNLOAD is. */
  keyUnloads: perTransfer(sessionStatement),
});
export type UnloadRecord = z.output<typeof unloadRecord>;

/** A run file was missing or unreadable: the run's folder was cleaned or the run is not this one. */
export class RunFileError extends SyncError {}

export class RunFiles {
  constructor(
    private readonly objects: ObjectStore,
    private readonly bucket: string,
    private readonly runId: string,
  ) {}

  private key(name: string): string {
    return `${runPrefix(this.runId)}${name}`;
  }

  private async read<T>(name: string, schema: z.ZodType<T>): Promise<T> {
    const where = `s3://${this.bucket}/${this.key(name)}`;
    let text: string;
    try {
      text = await this.objects.getText(this.bucket, this.key(name));
    } catch (error) {
      throw new RunFileError(
        `run ${this.runId}: cannot read ${where}; the run's files are gone (cleaned up, or expired). Start a new run.`,
        { cause: error },
      );
    }
    const result = schema.safeParse(JSON.parse(text));
    if (result.success) return result.data;
    const issue = result.error.issues[0]!;
    throw new RunFileError(
      `run ${this.runId}: ${where} is not a run file this version reads (${pathText(issue.path) || 'the file'}: ${issue.message}). Start a new run.`,
      { cause: result.error },
    );
  }

  private write(name: string, value: unknown): Promise<void> {
    return this.objects.putText(this.bucket, this.key(name), JSON.stringify(value));
  }

  readSetup(): Promise<RunSetup> {
    return this.read('run.json', runSetup);
  }

  writeSetup(setup: RunSetup): Promise<void> {
    return this.write('run.json', setup);
  }

  readUnload(): Promise<UnloadRecord> {
    return this.read('unload.json', unloadRecord);
  }

  writeUnload(record: UnloadRecord): Promise<void> {
    return this.write('unload.json', record);
  }

  readFigures(target: QualifiedName): Promise<TableFigures> {
    return this.read(`figures/${runScopedName(this.runId, target)}.json`, tableFigures);
  }

  writeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /**
   * The whole source table's figures in the snapshot, for a table unloaded as a delta (whose
   * readFigures describe the delta only).
   */
  readWholeFigures(target: QualifiedName): Promise<TableFigures> {
    return this.read(`whole-figures/${runScopedName(this.runId, target)}.json`, tableFigures);
  }

  writeWholeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`whole-figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /** The data files of a table, as its manifest listed them, in import order. */
  readFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`files/${runScopedName(this.runId, target)}.json`, z.array(dataFile));
  }

  writeFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`files/${runScopedName(this.runId, target)}.json`, files);
  }

  /** The key files of a table that reconciles deletes, as their manifest listed them. */
  readKeyFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`key-files/${runScopedName(this.runId, target)}.json`, z.array(dataFile));
  }

  writeKeyFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`key-files/${runScopedName(this.runId, target)}.json`, files);
  }

  deleteAll(): Promise<number> {
    return this.objects.deletePrefix(this.bucket, runPrefix(this.runId));
  }
}
