/**
 * The run's folder in the bucket, `runs/<runId>/`: UNLOAD's data files and manifests per
 * table, and what the steps hand each other that is too big for the state (the run's setup, the
 * column transfers, the source figures, each table's list of data files: the state carries
 * only names and counts, so its size does not grow with the files). Deleted when the run ends; a lifecycle rule expires
 * whatever a killed run left.
 */
// A namespace import: see lambdas/core/config-fields.ts.
import * as z from 'zod';
import { pathText } from '../core/config-fields';
import { SyncError } from '../core/errors';
import type { QualifiedName } from '../core/identifiers';
import { CURSOR_KINDS, type TableIncrement } from '../core/increment/mode';
import { runScopedName } from '../core/swap/plan';
import { SWAP_STRATEGIES } from '../core/swap/types';
import type { ObjectStore } from '../core/transfer/ports';
import {
  type DataFile,
  FIGURE_KINDS,
  INCREMENT_DELETES,
  INCREMENT_MODES,
  type TableFigures,
  type TableTransfer,
} from '../core/transfer/types';
import type { SessionStatement } from '../core/unload/statement';

export const RUNS_PREFIX = 'runs/';

export function runPrefix(runId: string): string {
  return `${RUNS_PREFIX}${runId}/`;
}

/*
 * The run files as zod schemas: each is parsed when read back, since a run in progress across
 * a deploy reads what the version before wrote. Unknown keys are dropped, not refused, for the
 * same reason (state.ts). The types the core defines are kept (the schemas are held to them).
 */
const count = z.int().min(0);
const name = z.object({ schema: z.string(), name: z.string() });
const column = z.object({
  name: z.string(),
  selectExpression: z.string(),
  convertedBytes: z.string().optional(),
  targetType: z.string(),
  figures: z.enum(FIGURE_KINDS),
});
const tableTransfer: z.ZodType<TableTransfer> = z.object({
  table: z.object({
    source: name,
    target: name,
    strategy: z.enum(SWAP_STRATEGIES),
    primaryKey: z.array(z.string()).optional(),
    allowEmpty: z.boolean(),
    incremental: z
      .object({
        cursor: z.string(),
        mode: z.enum(INCREMENT_MODES),
        deletes: z.enum(INCREMENT_DELETES),
      })
      .optional(),
  }),
  staging: name,
  columns: z.array(column),
  s3Prefix: z.string(),
  delta: z
    .object({
      cursor: z.string(),
      operator: z.enum(['>=', '>']),
      watermark: z.string(),
      castType: z.string(),
    })
    .optional(),
  keys: z.object({ columns: z.array(column), table: name, s3Prefix: z.string() }).optional(),
});
const at: z.ZodType<SessionStatement> = z.object({ batch: count, index: count });
const increment: z.ZodType<TableIncrement> = z.object({
  cursor: z.string(),
  cursorKind: z.enum(CURSOR_KINDS),
  apply: z.enum(INCREMENT_MODES),
  mode: z.enum(['full', 'incremental']),
  fullReason: z.string().nullable(),
  watermarkBefore: z.string().nullable(),
  castType: z.string(),
});
const dataFiles: z.ZodType<DataFile[]> = z.array(
  z.object({ bucket: z.string(), key: z.string(), bytes: count, records: count }),
);
const figures: z.ZodType<TableFigures> = z.object({
  rows: count,
  columns: z.array(
    z.object({
      column: z.string(),
      kind: z.enum(FIGURE_KINDS),
      nulls: count,
      min: z.string().nullable().optional(),
      max: z.string().nullable().optional(),
      octets: z.string().nullable().optional(),
      trues: count.optional(),
    }),
  ),
});

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

/** Per transfer; absent in records written before the field (read as null for every table). */
const perTransfer = <T>(item: z.ZodType<T>) => z.array(item.nullable()).readonly().optional();

/** What "Unload the tables from Redshift" decided, for the steps after it. */
const unloadRecord = z
  .object({
    submittedAt: z.string(),
    transfers: z.array(tableTransfer),
    /** The calls of the unload session, in order (buildUnloadSession). */
    batches: z.array(z.array(z.string()).readonly()).readonly(),
    /** Per batch, the index of the statement reading the transaction's start. */
    transactionStartIndex: z.array(count).readonly(),
    /** Per transfer, where its figures query is. */
    figures: z.array(at).readonly(),
    /** Per transfer, where its oversize count is, or null (buildUnloadSession). */
    oversize: perTransfer(at),
    /** Per transfer, the source columns the target does not have (not synced). */
    unsyncedColumns: z.array(z.array(z.string())),
    /** Per transfer, for a delta: where its whole-table figures query is. */
    wholeFigures: perTransfer(at),
    /** Per transfer: full or incremental and why, for an incremental table; null otherwise. */
    increments: perTransfer(increment),
    /** Per transfer, for a delta that reconciles deletes: where its key UNLOAD is. */
    keyUnloads: perTransfer(at),
  })
  .transform((record) => {
    const none = record.transfers.map(() => null);
    return {
      ...record,
      oversize: record.oversize ?? none,
      wholeFigures: record.wholeFigures ?? none,
      increments: record.increments ?? none,
      keyUnloads: record.keyUnloads ?? none,
    };
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
    const where = `run ${this.runId}: s3://${this.bucket}/${this.key(name)}`;
    let text: string;
    try {
      text = await this.objects.getText(this.bucket, this.key(name));
    } catch (error) {
      throw new RunFileError(
        `${where} cannot be read; the run's files are gone (cleaned up, or expired). Start a new run.`,
        { cause: error },
      );
    }
    const result = schema.safeParse(JSON.parse(text));
    if (result.success) return result.data;
    const issue = result.error.issues[0]!;
    throw new RunFileError(
      `${where} is not a run file this version reads (${pathText(issue.path) || 'the file'}: ${issue.message}). Start a new run.`,
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
    return this.read(`figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  writeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /**
   * The whole source table's figures in the snapshot, for a table unloaded as a delta (whose
   * readFigures describe the delta only).
   */
  readWholeFigures(target: QualifiedName): Promise<TableFigures> {
    return this.read(`whole-figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  writeWholeFigures(target: QualifiedName, figures: TableFigures): Promise<void> {
    return this.write(`whole-figures/${runScopedName(this.runId, target)}.json`, figures);
  }

  /** The data files of a table, as its manifest listed them, in import order. */
  readFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`files/${runScopedName(this.runId, target)}.json`, dataFiles);
  }

  writeFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`files/${runScopedName(this.runId, target)}.json`, files);
  }

  /** The key files of a table that reconciles deletes, as their manifest listed them. */
  readKeyFiles(target: QualifiedName): Promise<DataFile[]> {
    return this.read(`key-files/${runScopedName(this.runId, target)}.json`, dataFiles);
  }

  writeKeyFiles(target: QualifiedName, files: readonly DataFile[]): Promise<void> {
    return this.write(`key-files/${runScopedName(this.runId, target)}.json`, files);
  }

  deleteAll(): Promise<number> {
    return this.objects.deletePrefix(this.bucket, runPrefix(this.runId));
  }
}
