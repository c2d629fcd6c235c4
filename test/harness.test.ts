import { describe, expect, inject, it } from 'vitest';
import { freshDatabase } from './support/db';

describe('test harness', () => {
  it('runs the PostgreSQL major PG_MAJOR names (17 by default), with a database per test file', async () => {
    const db = await freshDatabase();
    const client = await db.connect();
    const { rows } = await client.query<{ version: string; db: string }>(
      "SELECT current_setting('server_version_num') AS version, current_database() AS db",
    );
    const major = Number(process.env.PG_MAJOR || 17);
    expect(inject('postgresMajor')).toBe(major);
    expect(Math.floor(Number(rows[0]!.version) / 10000)).toBe(major);
    expect(rows[0]!.db).toBe(db.name);
  });
});
