/**
 * The run's folder in the bucket, `runs/<runId>/`: UNLOAD's data files and manifests per
 * table, and what the steps hand each other that is too big for the state (the run's setup, the
 * column transfers, the source figures, each table's list of data files: the state carries
 * only names and counts, so its size does not grow with the files). Deleted when the run ends; a lifecycle rule expires
 * whatever a killed run left.
 */
import { SyncError } from '../core/errors';
import type { QualifiedName } from '../core/identifiers';
import type { TableIncrement } from '../core/increment/mode';
import { runScopedName } from '../core/swap/plan';
import type { ObjectStore } from '../core/transfer/ports';
import type { DataFile, TableFigures, TableTransfer } from '../core/transfer/types';
import type { SessionStatement } from '../core/unload/statement';

export const RUNS_PREFIX = 'runs/';

export function runPrefix(runId: string): string {
  return `${RUNS_PREFIX}${runId}/`;
}

/** What "Prepare the run" fixed for the run: the configuration as it was, the tables chosen. */
export interface RunSetup {
  readonly runId: string;
  readonly environment: string;
  readonly startedAt: string;
  readonly dryRun: boolean;
  readonly maxWaitSeconds: number;
  /** Incremental tables are taken whole (the execution input's fullRefresh). */
  readonly fullRefresh: boolean;
  /** runtimeConfigJson of the configuration the run started with. */
  readonly config: unknown;
  /** Targets chosen for this run, as configured. */
  readonly targets: readonly string[];
}

/** What "Unload the tables from Redshift" decided, for the steps after it. */
export interface UnloadRecord {
  readonly submittedAt: string;
  readonly transfers: readonly TableTransfer[];
  /** The calls of the unload session, in order (buildUnloadSession). */
  readonly batches: readonly (readonly string[])[];
  /** Per batch, the index of the statement reading the transaction's start. */
  readonly transactionStartIndex: readonly number[];
  /** Per transfer, where its figures query is. */
  readonly figures: readonly SessionStatement[];
  /** Per transfer, where its oversize count is, or null (buildUnloadSession). */
  readonly oversize: readonly (SessionStatement | null)[];
  /** Per transfer, the source columns the target does not have (not synced). */
  readonly unsyncedColumns: readonly (readonly string[])[];
  /** Per transfer, for a delta: where its whole-table figures query is. */
  readonly wholeFigures: readonly (SessionStatement | null)[];
  /** Per transfer: full or incremental and why, for an incremental table; null otherwise. */
  readonly increments: readonly (TableIncrement | null)[];
  /** Per transfer, for a delta that reconciles deletes: where its key UNLOAD is. */
  readonly keyUnloads: readonly (SessionStatement | null)[];
}

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

  private async read<T>(name: string): Promise<T> {
    let text: string;
    try {
      text = await this.objects.getText(this.bucket, this.key(name));
    } catch (error) {
      throw new RunFileError(
        `run ${this.runId}: cannot read s3://${this.bucket}/${this.key(name)}; the run's files are gone (cleaned up, or expired). Start a new run.`,
        { cause: error },
      );
    }
    return JSON.parse(text) as T;
  }

  private write(name: string, value: unknown): Promise<void> {
    return this.objects.putText(this.bucket, this.key(name), JSON.stringify(value));
  }

  readSetup(): Promise<RunSetup> {
    return this.read('run.json');
  }

  writeSetup(setup: RunSetup): Promise<void> {
    return this.write('run.json', setup);
  }

  /**
   * A record written before oversize counts existed has no `oversize`: a run in progress across
   * a deploy reads it as "no table has a count", which is what that version ran.
   */
  async readUnload(): Promise<UnloadRecord> {
    // A run in progress across a deploy reads a record an earlier version wrote: the fields
    // added since (oversize counts, deltas, key unloads) read as absent for every table.
    const record = await this.read<Partial<UnloadRecord> & Pick<UnloadRecord, 'transfers'>>(
      'unload.json',
    );
    const none = record.transfers.map(() => null);
    return {
      ...record,
      oversize: record.oversize ?? none,
      wholeFigures: record.wholeFigures ?? none,
      increments: record.increments ?? none,
      keyUnloads: record.keyUnloads ?? none,
    } as UnloadRecord;
  }

  writeUnload(record: UnloadRecord): Promise<void> {
    return this.write('unload.json', record);
  }

  readFigures(target: QualifiedName): Promise<TableFigures> {
    return this.read(`figures/${runScopedName(this.runId, target)}.json`);
  }

  writeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /**
   * The whole source table's figures in the snapshot, for a table unloaded as a delta (whose
   * readFigures describe the delta only).
   */
  readWholeFigures(target: QualifiedName): Promise<TableFigures> {
    return this.read(`whole-figures/${runScopedName(this.runId, target)}.json`);
  }

  writeWholeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`whole-figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /** The data files of a table, as its manifest listed them, in import order. */
  readFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`files/${runScopedName(this.runId, target)}.json`);
  }

  writeFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`files/${runScopedName(this.runId, target)}.json`, files);
  }

  /** The key files of a table that reconciles deletes, as their manifest listed them. */
  readKeyFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`key-files/${runScopedName(this.runId, target)}.json`);
  }

  writeKeyFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`key-files/${runScopedName(this.runId, target)}.json`, files);
  }

  deleteAll(): Promise<number> {
    return this.objects.deletePrefix(this.bucket, runPrefix(this.runId));
  }
}
