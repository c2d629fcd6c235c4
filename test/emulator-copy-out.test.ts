/**
 * CopyOut, the UNLOAD emulator's reader of `COPY ... TO STDOUT`: the rows' bytes exactly,
 * whatever the socket's pieces, with notices in between, a slow reader, and an error in the
 * middle, after which the session goes on.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyOut } from '../local/emulators/copy-out';
import { freshDatabase } from './support/db';

let client: pg.Client;

beforeAll(async () => {
  const db = await freshDatabase();
  client = await db.connect('copy-out');
  await client.query(
    `CREATE FUNCTION noisy(g int) RETURNS int LANGUAGE plpgsql AS $$
     BEGIN
       IF g % 1000 = 0 THEN RAISE NOTICE 'row %', g; END IF;
       RETURN g;
     END $$`,
  );
});

afterAll(async () => {
  await client?.end();
});

async function read(copy: CopyOut, wait = 0): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of copy) {
    pieces.push(Buffer.from(piece as Buffer));
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
  return Buffer.concat(pieces);
}

/** The same rows as text lines, built in Node. */
function lines(count: number, line: (g: number) => string): string {
  return Array.from({ length: count }, (_, index) => `${line(index + 1)}\n`).join('');
}

describe('CopyOut', () => {
  it('gives the rows of many messages and of rows longer than a socket read', async () => {
    const small = await read(
      client.query(
        new CopyOut('COPY (SELECT g, md5(g::text) FROM generate_series(1, 50000) AS g) TO STDOUT'),
      ),
    );
    expect(small.toString()).toBe(
      lines(50000, (g) => `${g}\t${createHash('md5').update(String(g)).digest('hex')}`),
    );
    const long = await read(
      client.query(
        new CopyOut(
          `COPY (SELECT repeat('ü', 100000) || g FROM generate_series(1, 5) AS g) TO STDOUT`,
        ),
      ),
    );
    expect(long.toString()).toBe(lines(5, (g) => `${'ü'.repeat(100000)}${g}`));
  });

  it('skips notices sent between the rows, and waits for a slow reader', async () => {
    const copied = await read(
      client.query(
        new CopyOut('COPY (SELECT noisy(g) FROM generate_series(1, 20000) AS g) TO STDOUT'),
      ),
      1,
    );
    expect(copied.toString()).toBe(lines(20000, String));
  });

  it('lets a reader stop early: the rest of the rows are dropped and the session goes on', async () => {
    const copy = client.query(
      new CopyOut(
        'COPY (SELECT g, repeat($$x$$, 100) FROM generate_series(1, 200000) AS g) TO STDOUT',
      ),
    );
    for await (const piece of copy) {
      expect((piece as Buffer).toString()).toMatch(/^1\tx/);
      break;
    }
    const { rows } = await client.query('SELECT 3 AS three');
    expect(rows).toEqual([{ three: 3 }]);
  });

  it('fails with the server error in the middle of the rows, and the session goes on', async () => {
    const failing = client.query(
      new CopyOut(
        'COPY (SELECT 100000 / (50000 - g) FROM generate_series(1, 60000) AS g) TO STDOUT',
      ),
    );
    await expect(read(failing)).rejects.toThrow('division by zero');
    const { rows } = await client.query('SELECT 1 AS one');
    expect(rows).toEqual([{ one: 1 }]);
    await expect(read(client.query(new CopyOut('COPY (SELECT nope) TO STDOUT')))).rejects.toThrow(
      /column "nope" does not exist/,
    );
    expect((await read(client.query(new CopyOut('COPY (SELECT 2) TO STDOUT')))).toString()).toBe(
      '2\n',
    );
  });
});
