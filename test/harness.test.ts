import { describe, expect, it } from 'vitest';
import { freshDatabase } from './support/db';

describe('test harness', () => {
  it('runs PostgreSQL 17, the major version Aurora runs, with a database per test file', async () => {
    const db = await freshDatabase();
    const client = await db.connect();
    const { rows } = await client.query<{ version: string; db: string }>(
      "SELECT current_setting('server_version_num') AS version, current_database() AS db",
    );
    expect(Number(rows[0]!.version)).toBeGreaterThanOrEqual(170000);
    expect(Number(rows[0]!.version)).toBeLessThan(180000);
    expect(rows[0]!.db).toBe(db.name);
  });
});
