/**
 * The source's backends of the Redshift Data API fake's sessions, as the contract tests that
 * cancel or lose an UNLOAD watch them: read by an observer session of its own, outside the lock
 * holder's transaction, which would see one snapshot of pg_stat_activity.
 */
import type { TestDatabase } from './db';

export interface FakeSessions {
  /** What each of them is doing now, and what it waits for. */
  now(): Promise<{ state: string; waiting: string | null }[]>;
  /** Returns once one of them waits for a lock (an UNLOAD behind a locked table). */
  untilOneWaitsForLock(): Promise<void>;
}

export async function fakeSessionsOn(source: TestDatabase): Promise<FakeSessions> {
  const observer = await source.connect('test observer');
  const now = async () =>
    (
      await observer.query<{ state: string; waiting: string | null }>(
        `SELECT state, wait_event_type AS waiting FROM pg_stat_activity
         WHERE application_name = 'redshift-data-api fake session'`,
      )
    ).rows;
  return {
    now,
    async untilOneWaitsForLock() {
      for (let attempt = 0; attempt < 500; attempt += 1) {
        if ((await now()).some((session) => session.waiting === 'Lock')) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      throw new Error('no session of the Data API fake waited for a lock: was the table locked?');
    },
  };
}
