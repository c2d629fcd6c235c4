/**
 * `COPY ... TO STDOUT` read straight off a pg client's socket, for the UNLOAD emulator. The
 * server sends each row as a CopyData message of its own
 * (https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY, "COPY
 * Operations"); this reader copies the rows' bytes, without the 5-byte message headers, into
 * one buffer per piece the socket delivers, with no object per row. While the COPY runs the
 * socket is taken from pg, the way pg-copy-streams' copy-to takes it, and given back, with
 * every byte after the COPY's data, at CopyDone or at an error (ErrorResponse), which pg then
 * reads and reports through handleError.
 */

import { Readable } from 'node:stream';
import type pg from 'pg';

/** Message types (https://www.postgresql.org/docs/current/protocol-message-formats.html). */
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const ERROR_RESPONSE = 0x45; // 'E'
/** Type byte and 32-bit length. */
const HEADER_BYTES = 5;

/** A readable of the COPY's row bytes, for `client.query(new CopyOut(sql))`. */
export class CopyOut extends Readable implements pg.Submittable {
  private connection: pg.Connection | null = null;
  /** pg's own reader of the socket, while this one has it. */
  private pgReader: ((data: Buffer) => void) | null = null;
  /** The start of a message that has not all arrived. */
  private rest: Buffer | null = null;
  private paused = false;

  constructor(private readonly text: string) {
    super();
  }

  submit(connection: pg.Connection): void {
    this.connection = connection;
    const readers = connection.stream.listeners('data');
    if (readers.length !== 1) {
      throw new Error(`expected pg to read the socket with one listener; found ${readers.length}`);
    }
    this.pgReader = readers[0] as (data: Buffer) => void;
    connection.stream.removeListener('data', this.pgReader);
    connection.stream.on('data', this.read_);
    connection.query(this.text);
  }

  private readonly read_ = (piece: Buffer): void => {
    const data = this.rest === null ? piece : Buffer.concat([this.rest, piece]);
    this.rest = null;
    let fill = 0;
    let at = 0;
    while (at + HEADER_BYTES <= data.length) {
      const type = data[at]!;
      if (type === ERROR_RESPONSE) {
        this.giveBack(data, fill, data.subarray(at), false);
        return;
      }
      const end = at + 1 + data.readUInt32BE(at + 1);
      if (end > data.length) break;
      if (type === COPY_DATA) {
        // In place, towards the start: the bytes written over were read already.
        data.copyWithin(fill, at + HEADER_BYTES, end);
        fill += end - at - HEADER_BYTES;
      } else if (type === COPY_DONE) {
        this.giveBack(data, fill, data.subarray(end), true);
        return;
      }
      // CopyOutResponse first; NoticeResponse and ParameterStatus may come at any time.
      at = end;
    }
    if (at < data.length) this.rest = Buffer.from(data.subarray(at));
    // A reader that stopped early: the rows are dropped until the COPY ends, so pg gets the
    // socket back and the session goes on.
    if (this.destroyed) return;
    if (fill > 0 && !this.push(data.subarray(0, fill))) {
      this.paused = true;
      this.connection!.stream.pause();
    }
  };

  /** Hands the socket back to pg with `after`, the bytes that follow; ends the rows if `done`. */
  private giveBack(rows: Buffer, fill: number, after: Buffer, done: boolean): void {
    if (!this.destroyed) {
      if (fill > 0) this.push(rows.subarray(0, fill));
      if (done) this.push(null);
    }
    const stream = this.connection!.stream;
    stream.removeListener('data', this.read_);
    stream.on('data', this.pgReader!);
    if (this.paused) stream.resume();
    if (after.length > 0) this.pgReader!(after);
  }

  override _read(): void {
    if (!this.paused) return;
    this.paused = false;
    this.connection!.stream.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this._read();
    callback(error);
  }

  /** The COPY failed: pg read the ErrorResponse. */
  handleError(error: Error): void {
    this.destroy(error);
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {}
}
