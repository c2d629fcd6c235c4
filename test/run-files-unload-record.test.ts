/**
 * The unload record as check-unload reads it back: one written by the version before oversize
 * counts (no `oversize` field) belongs to a run in progress across a deploy, and reads as "no
 * table has a count" instead of crashing refuseOversized with a TypeError.
 */
import { describe, expect, it } from 'vitest';
import type { ObjectStore } from '../lambdas/core/transfer/ports';
import { RunFiles, type UnloadRecord } from '../lambdas/pipeline/run-files';

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
      },
      staging: { schema: 'sync_staging', name: 'docs_r1' },
      columns: [],
      s3Prefix: 's3://bucket/runs/r-1/public.docs/',
    },
  ] as unknown as UnloadRecord['transfers'],
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
    expect(read.oversize).toEqual([null, null]);
    expect(read).toEqual({ ...RECORD, oversize: [null, null] });
  });

  it('keeps the oversize counts of a record that has them', async () => {
    const files = new RunFiles(memoryStore(), 'bucket', 'r-1');
    await files.writeUnload(RECORD);
    expect(await files.readUnload()).toEqual(RECORD);
  });
});
