import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import { LocalObjectStore, ObjectNotFoundError } from '../local/emulators/local-object-store';

let s3Dir: string;
let store: LocalObjectStore;

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'emulator-objects-'));
  store = new LocalObjectStore(s3Dir);
});

afterAll(async () => {
  await rm(s3Dir, { recursive: true, force: true });
});

describe('LocalObjectStore', () => {
  it('keeps s3://bucket/key as <s3Dir>/bucket/key, readable by others', async () => {
    await store.putText('run-files', 'runs/r1/plan.json', '{"tables":["é😀"]}');
    const path = join(s3Dir, 'run-files', 'runs', 'r1', 'plan.json');
    expect(await readFile(path, 'utf8')).toBe('{"tables":["é😀"]}');
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect((await stat(join(s3Dir, 'run-files', 'runs'))).mode & 0o777).toBe(0o755);
    expect(await store.getText('run-files', 'runs/r1/plan.json')).toBe('{"tables":["é😀"]}');
  });

  it('replaces an object on put, and appends for the UNLOAD writer', async () => {
    await store.putText('run-files', 'a/b', 'first');
    await store.putText('run-files', 'a/b', 'second');
    await store.appendToObject('run-files', 'a/b', Buffer.from('+more'));
    expect(await store.getText('run-files', 'a/b')).toBe('second+more');
  });

  it('says which object is missing', async () => {
    await expect(store.getText('run-files', 'runs/none')).rejects.toThrow(ObjectNotFoundError);
    await expect(store.getText('run-files', 'runs/none')).rejects.toThrow(
      's3://run-files/runs/none does not exist',
    );
  });

  it('lists and deletes by key prefix, as S3 matches prefixes (not folders)', async () => {
    for (const key of [
      'runs/r2/t_a/0000_part_00',
      'runs/r2/t_a/manifest',
      'runs/r2/t_b/0000_part_00',
      'runs/r3/x',
    ]) {
      await store.putText('run-files', key, 'x');
    }
    expect(await store.listKeys('run-files', 'runs/r2/t_')).toEqual([
      'runs/r2/t_a/0000_part_00',
      'runs/r2/t_a/manifest',
      'runs/r2/t_b/0000_part_00',
    ]);
    expect(await store.listKeys('run-files', 'runs/r2/t_a/')).toHaveLength(2);
    expect(await store.listKeys('run-files', 'nothing/here/')).toEqual([]);
    expect(await store.listKeys('other-bucket', '')).toEqual([]);
    expect(await store.deletePrefix('run-files', 'runs/r2/')).toBe(3);
    expect(await store.listKeys('run-files', 'runs/r')).toEqual(['runs/r1/plan.json', 'runs/r3/x']);
  });

  it('refuses keys and buckets a folder cannot hold safely', async () => {
    for (const key of ['/abs', '../outside', 'a//b', 'a/./b', 'folder/', '']) {
      await expect(store.putText('run-files', key, 'x')).rejects.toThrow(ConfigError);
    }
    await expect(store.putText('Bad_Bucket', 'k', 'x')).rejects.toThrow(/not an S3 bucket name/);
    await expect(store.listKeys('run-files', '../')).rejects.toThrow(ConfigError);
  });
});
