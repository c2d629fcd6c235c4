/**
 * The run files as the steps read them back, parsed by their schemas: an unload record written
 * by the version before oversize counts, deltas and key unloads (no such fields) belongs to a
 * run in progress across a deploy, and reads as "none for any table" (empty lists) instead of
 * crashing refuseOversized with a TypeError; a file that is not a run file stops the step, naming the
 * file and the field.
 */
import { describe, expect, it } from 'vitest';
import type { ObjectStore } from '../lambdas/core/transfer/ports';
import { RunFileError, RunFiles, type UnloadRecord } from '../lambdas/pipeline/run-files';

function memoryStore(): ObjectStore & { readonly objects: Map<string, string> } {
  const objects = new Map<string, string>();
  return {
    objects,
    getText: async (bucket, key) => {
      const text = objects.get(`${bucket}/${key}`);
      if (text === undefined) throw new Error(`no object ${key}`);
      return text;
    },
    putText: async (bucket, key, text) => void objects.set(`${bucket}/${key}`, text),
    deletePrefix: async () => 0,
  };
}

const RECORD: UnloadRecord = {
  submittedAt: '2026-01-01T00:00:00.000Z',
  transfers: [
    {
      table: {
        source: { schema: 'sales', name: 'orders' },
        target: { schema: 'public', name: 'orders' },
        strategy: 'rename',
        allowEmpty: false,
      },
      staging: { schema: 'sync_staging', name: 'orders_r1' },
      columns: [],
      s3Prefix: 's3://bucket/runs/r-1/public.orders/',
    },
    {
      table: {
        source: { schema: 'sales', name: 'docs' },
        target: { schema: 'public', name: 'docs' },
        strategy: 'rename',
        allowEmpty: false,
      },
      staging: { schema: 'sync_staging', name: 'docs_r1' },
      columns: [],
      s3Prefix: 's3://bucket/runs/r-1/public.docs/',
    },
  ],
  batches: [['BEGIN', 'COMMIT']],
  transactionStartIndex: [1],
  figures: [
    { batch: 0, index: 2 },
    { batch: 0, index: 3 },
  ],
  oversize: [null, { batch: 0, index: 1 }],
  wholeFigures: [null, null],
  increments: [null, null],
  keyUnloads: [null, null],
  unsyncedColumns: [[], []],
};

describe('RunFiles.readUnload', () => {
  it('reads a record an earlier version wrote, without oversize counts, deltas or key unloads, as none of them', async () => {
    const store = memoryStore();
    const files = new RunFiles(store, 'bucket', 'r-1');
    await files.writeUnload(RECORD);
    const [key] = [...store.objects.keys()];
    const { oversize: _o, wholeFigures: _w, increments: _i, keyUnloads: _k, ...previous } = RECORD;
    store.objects.set(key!, JSON.stringify(previous));
    const read = await files.readUnload();
    // Empty: every reader (noUncheckedIndexedAccess) takes a missing entry as null.
    const none = { oversize: [], wholeFigures: [], increments: [], keyUnloads: [] };
    expect(read).toEqual({ ...RECORD, ...none });
  });

  it('keeps the oversize counts of a record that has them', async () => {
    const files = new RunFiles(memoryStore(), 'bucket', 'r-1');
    await files.writeUnload(RECORD);
    expect(await files.readUnload()).toEqual(RECORD);
  });

  it('refuses a record that is not one, naming the file and the field', async () => {
    const store = memoryStore();
    const files = new RunFiles(store, 'bucket', 'r-1');
    await files.writeUnload({ ...RECORD, figures: [{ batch: 0, index: -1 }, RECORD.figures[1]!] });
    await expect(files.readUnload()).rejects.toThrow(RunFileError);
    await expect(files.readUnload()).rejects.toThrow(
      'run r-1: s3://bucket/runs/r-1/unload.json is not a run file this version reads (figures[0].index: Too small: expected number to be >=0). Start a new run.',
    );
    const orders = { schema: 'public', name: 'orders' };
    await files.writeFiles(orders, [{ bucket: 'b', key: 'k', bytes: 1, records: 1 }]);
    const key = [...store.objects.keys()].find((name) => name.includes('/files/'))!;
    store.objects.set(key, '[{"bucket": "b", "key": "k"}]');
    await expect(files.readFiles(orders)).rejects.toThrow(
      /is not a run file this version reads \(\[0\]\.bytes: Invalid input: expected number, received undefined\)/,
    );
  });

  it('gives back the figures and the file lists as written', async () => {
    const files = new RunFiles(memoryStore(), 'bucket', 'r-1');
    const orders = { schema: 'public', name: 'orders' };
    const figures = {
      rows: 2,
      columns: [
        { column: 'id', kind: 'integer' as const, nulls: 0, min: '1', max: '2' },
        { column: 'paid', kind: 'boolean' as const, nulls: 1, trues: 1 },
      ],
    };
    await files.writeFigures(orders, figures);
    await files.writeWholeFigures(orders, { ...figures, rows: 5 });
    await files.writeKeyFiles(orders, [{ bucket: 'b', key: 'k', bytes: 10, records: 2 }]);
    expect(await files.readFigures(orders)).toEqual(figures);
    expect(await files.readWholeFigures(orders)).toEqual({ ...figures, rows: 5 });
    expect(await files.readKeyFiles(orders)).toEqual([
      { bucket: 'b', key: 'k', bytes: 10, records: 2 },
    ]);
  });
});
