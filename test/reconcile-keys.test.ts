/**
 * Collecting a finished key UNLOAD (lambdas/pipeline/reconcile.ts): the key manifest's record
 * count must equal the whole source table's row count of the same snapshot, since a key set
 * that misses a row would delete that row from live. Over the local object store (a folder).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { TableTransfer } from '../lambdas/core/transfer/types';
import type { PipelineDeps } from '../lambdas/pipeline/deps';
import { collectKeys, KeyCountError } from '../lambdas/pipeline/reconcile';
import { RunFiles } from '../lambdas/pipeline/run-files';
import { LocalObjectStore } from '../local/emulators/local-object-store';

const BUCKET = 'sync-bucket';
const KEYS = 'runs/r1/orders__abc/keys/';

const transfer: TableTransfer = {
  table: {
    source: { schema: 'sales', name: 'orders' },
    target: { schema: 'public', name: 'orders' },
    strategy: 'rename',
    allowEmpty: false,
  },
  staging: { schema: 'redshift_sync_staging', name: 'orders__abc' },
  columns: [{ name: 'id', selectExpression: '"id"', targetType: 'bigint', figures: 'integer' }],
  s3Prefix: `s3://${BUCKET}/runs/r1/orders__abc/`,
  keys: {
    columns: [{ name: 'id', selectExpression: '"id"', targetType: 'bigint', figures: 'integer' }],
    table: { schema: 'redshift_sync_staging', name: 'orders__abc_keys' },
    s3Prefix: `s3://${BUCKET}/${KEYS}`,
  },
};

async function collect(keyRecords: number, wholeRows: number) {
  const objects = new LocalObjectStore(await mkdtemp(join(tmpdir(), 'reconcile-keys-')));
  const files = new RunFiles(objects, BUCKET, 'r1');
  await files.writeWholeFigures(transfer.table.target, { rows: wholeRows, columns: [] });
  await objects.putText(
    BUCKET,
    `${KEYS}manifest`,
    JSON.stringify({
      entries: [
        {
          url: `s3://${BUCKET}/${KEYS}0000_part_00`,
          meta: { content_length: 9, record_count: keyRecords },
        },
      ],
    }),
  );
  const recorded: number[] = [];
  const deps = {
    objects,
    metrics: { record: (_: string, __: string, value: number) => recorded.push(value) },
  } as unknown as PipelineDeps;
  const listed = await collectKeys(deps, files, transfer);
  return { listed, stored: await files.readKeyFiles(transfer.table.target), recorded };
}

describe('collectKeys', () => {
  it('keeps the key files when they hold one key per row of the snapshot', async () => {
    const { listed, stored, recorded } = await collect(4, 4);
    expect(listed).toEqual([{ bucket: BUCKET, key: `${KEYS}0000_part_00`, bytes: 9, records: 4 }]);
    expect(stored).toEqual(listed);
    expect(recorded).toEqual([4]);
  });

  it('fails the run when the key files miss a row (or hold one too many)', async () => {
    await expect(collect(3, 4)).rejects.toThrow(KeyCountError);
    await expect(collect(5, 4)).rejects.toThrow(
      'sales.orders: the key manifest lists 5 keys but the same snapshot counted 4 rows; the key unload does not match the snapshot',
    );
  });
});
