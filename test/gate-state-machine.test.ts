/**
 * The lock gate as production runs it: the synthesized state machine executed locally, its
 * "Check locks", "Terminate the sessions" and "Swap" states bound to the real step code, against a
 * table that six sessions read in back-to-back short transactions, each longer than
 * lock_timeout and shorter than the grace period. The run must end within maxWaitSeconds plus
 * a bounded margin: failing with the readers named, or after ending them.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { OnMaxWaitSetting } from '../lambdas/core/swap/policy';
import type { RunSummary } from '../lambdas/pipeline/summary';
import { backToBackReaders } from './support/back-to-back-readers';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { runLocally } from './support/local-pipeline';
import { uniqueRoles } from './support/swap-fixtures';

let ground: DatabasesAndBucket;
const roles = uniqueRoles('looper');

beforeAll(async () => {
  ground = await databasesAndBucket('gate-run-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint, note text);
    INSERT INTO sales.orders SELECT g, 'new' FROM generate_series(1, 20) g;
  `);
  await ground.target.query(`
    CREATE ROLE ${roles.looper} LOGIN PASSWORD 'looper';
    CREATE TABLE public.orders (id bigint, note text);
    INSERT INTO public.orders VALUES (100, 'old');
    GRANT SELECT ON public.orders TO ${roles.looper};
    ALTER TABLE public.orders OWNER TO ${ground.owner};
  `);
});

function run(onMaxWait: OnMaxWaitSetting, progress: string[] = []): Promise<RunSummary> {
  return runLocally({
    ...ground.runOn,
    config: {
      tables: [{ source: 'sales.orders', target: 'public.orders', strategy: 'rename' }],
      locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, graceSeconds: 2, onMaxWait },
    },
    request: { maxWaitSeconds: 4 },
    onProgress: (line) => progress.push(line),
  });
}

async function liveNotes(): Promise<string[]> {
  const { rows } = await ground.target.query('SELECT DISTINCT note FROM public.orders ORDER BY 1');
  return rows.map((row) => row.note);
}

describe('a run against back-to-back short readers', () => {
  it('fails after maxWaitSeconds naming them (onMaxWait "fail"), live table untouched', async () => {
    const readers = await backToBackReaders(ground.targetDb, 'public.orders', ground.target, {
      user: roles.looper,
      password: 'looper',
    });
    const started = performance.now();
    const summary = await run('fail');
    const tookSeconds = (performance.now() - started) / 1000;
    await readers.stop();

    expect(summary.status).toBe('FAILED');
    expect(summary.error).toMatchObject({ name: 'LockWaitTimeoutError' });
    expect(summary.error!.message).toMatch(
      /activeQuery: pid \d+ \(user \w+, application "back-to-back".*held the lock through \d+ swap attempts/,
    );
    expect(summary.tables[0]!.terminated).toEqual([]);
    // maxWaitSeconds 4, plus the run's other stages and a bounded margin.
    expect(tookSeconds).toBeLessThan(4 + 30);
    expect(await liveNotes()).toEqual(['old']);
  });

  it('ends them and swaps (onMaxWait terminating activeQuery), saying so in the summary', async () => {
    const readers = await backToBackReaders(ground.targetDb, 'public.orders', ground.target, {
      user: roles.looper,
      password: 'looper',
    });
    const started = performance.now();
    const progress: string[] = [];
    const summary = await run({ activeQuery: 'terminate' }, progress);
    const tookSeconds = (performance.now() - started) / 1000;
    const ends = await readers.stop();

    expect(summary.status).toBe('SUCCEEDED');
    // The summary says whom onMaxWait ended, of what class, and what came of it.
    expect(summary.tables[0]!.terminated).toContainEqual({
      pid: expect.any(Number),
      gid: null,
      blockerClass: 'activeQuery',
      relations: ['public.orders'],
      outcome: 'terminated',
      reason: null,
    });
    expect(progress).toContainEqual(
      expect.stringMatching(
        /onMaxWait ended the blocking sessions:\n {4}- pid \d+ \(activeQuery\): terminated/,
      ),
    );
    expect(ends).toContain('ended by the server');
    expect(tookSeconds).toBeLessThan(4 + 30);
    expect(await liveNotes()).toEqual(['new']);
  });
});
