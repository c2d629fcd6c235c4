/**
 * Sessions that read a table in back-to-back short transactions, the reader pattern a busy
 * dashboard makes: each transaction holds ACCESS SHARE for 0.5 to 1.7 s (drawn anew each time,
 * so that they do not fall into step), longer than a 200 ms lock_timeout and younger than a 2 s
 * grace period. An attempt under that lock_timeout gets through only if every reader's
 * transaction ends within 200 ms of it.
 *
 * The loop runs inside the server (a DO block that commits after each transaction), not in
 * this process: a loop driven from Node leaves the table unlocked between COMMIT and the next
 * BEGIN whenever the event loop is busy, which under CI load let a swap through that the test
 * expected to collide.
 */
import type pg from 'pg';
import type { TestDatabase } from './db';

const READERS = 6;

export interface BackToBackReaders {
  readonly pids: number[];
  /** Cancels the loops; "stopped" per reader cancelled here, "ended by the server" per reader terminated before. */
  stop(): Promise<Array<'stopped' | 'ended by the server'>>;
}

export async function backToBackReaders(
  db: TestDatabase,
  quotedTable: string,
  canceller: pg.Client,
  login?: { user: string; password: string },
): Promise<BackToBackReaders> {
  const sessions = await Promise.all(
    Array.from({ length: READERS }, () => db.connect('back-to-back', login)),
  );
  const pids = await Promise.all(
    sessions.map(
      async (session) =>
        (await session.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number,
    ),
  );
  const loops = sessions.map((session, index) =>
    session
      .query(
        `DO $$
         BEGIN
           PERFORM pg_sleep(${(index * 0.2).toFixed(1)});
           LOOP
             LOCK TABLE ${quotedTable} IN ACCESS SHARE MODE;
             PERFORM pg_sleep(0.5 + random() * 1.2);
             COMMIT;
           END LOOP;
         END $$`,
      )
      .then(
        () => 'ended by the server' as const,
        (error: { code?: string }) =>
          error.code === '57014' ? ('stopped' as const) : ('ended by the server' as const),
      ),
  );
  // Every reader holds the lock before the caller starts its run.
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const { rows } = await canceller.query(
      `SELECT count(DISTINCT pid)::int AS n FROM pg_locks
        WHERE pid = ANY($1) AND relation = $2::regclass AND granted`,
      [pids, quotedTable],
    );
    if (rows[0].n === READERS) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    pids,
    async stop() {
      await canceller.query('SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid', [pids]);
      return Promise.all(loops);
    },
  };
}
