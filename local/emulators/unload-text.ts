/**
 * PostgreSQL's COPY text output turned into the lines Redshift's UNLOAD writes, on byte
 * buffers. The emulator has PostgreSQL print every value in C (`COPY ... TO STDOUT (FORMAT
 * text, DELIMITER <the UNLOAD's>, NULL '\N')`); the two formats differ only where COPY puts a
 * backslash (https://www.postgresql.org/docs/current/sql-copy.html, "Text Format": before a
 * backslash, the delimiter, LF and CR in a value; `\b \f \n \r \t \v` for those control
 * characters; `\N` for NULL, never escaped) and in floats, which Redshift prints with `%g`
 * digits (see floatText). So the bytes between backslashes are copied as they are, found with
 * Buffer.indexOf; only the escapes are rewritten by the rules of unload-format.ts:
 * - in a character value with ESCAPE, a backslash before backslash, delimiter, LF and CR (COPY's
 *   `\n` becomes a backslash and an LF), every other control character as itself;
 * - in any other value every character as itself;
 * - NULL as the NULL AS text.
 * UTF-8 needs no care: a multi-byte character's bytes are all 0x80 or more, never one of these.
 */

import { FLOAT_DIGITS, floatText, type LineFormat, type UnloadColumn } from './unload-format';

const BACKSLASH = 0x5c;
const LF = 0x0a;
const CR = 0x0d;
const NULL_MARK = 0x4e; // 'N' of `\N`

/** The byte each COPY text escape stands for: its letter for a control character, else itself. */
const UNESCAPED = Uint8Array.from({ length: 256 }, (_, byte) => byte);
for (const [letter, control] of [
  ['b', 0x08],
  ['f', 0x0c],
  ['n', LF],
  ['r', CR],
  ['t', 0x09],
  ['v', 0x0b],
] as const) {
  UNESCAPED[letter.charCodeAt(0)] = control;
}

/**
 * How a field's bytes are rewritten: `escaped` (a character value under ESCAPE), `plain` (any
 * other value that may hold an escape), `clean` (a type whose text never holds a backslash, a
 * control character or the delimiter, so only `\N` can occur), or a float sent as its bits in
 * hex (unload-format.ts copyStatement).
 */
type FieldRule = 'escaped' | 'plain' | 'clean' | 'float4' | 'float8';

/**
 * Types whose text is only letters, digits, space and `+-:./@,` (numbers, booleans, dates, times,
 * intervals, UUIDs, bare hex), in every DateStyle and IntervalStyle.
 */
const CLEAN_TYPES = new Set([
  'smallint',
  'integer',
  'bigint',
  'oid',
  'numeric',
  'boolean',
  'date',
  'time without time zone',
  'time with time zone',
  'timestamp without time zone',
  'timestamp with time zone',
  'interval',
  'uuid',
  'bytea',
]);
const CLEAN_TEXT = /[A-Za-z0-9 +\-:./@,]/;

function ruleFor(column: UnloadColumn, format: LineFormat): FieldRule {
  if (column.significantDigits !== undefined) {
    return FLOAT_DIGITS[column.type]!.float4 ? 'float4' : 'float8';
  }
  if (format.escape && column.character) return 'escaped';
  if (CLEAN_TYPES.has(column.type) && !CLEAN_TEXT.test(format.delimiter)) return 'clean';
  return 'plain';
}

/** What a two-byte escape `\x` becomes under each rule: the bytes to write, or null to keep it. */
function replacements(format: LineFormat, escaping: boolean): (Buffer | null)[] {
  const delimiter = format.delimiter.charCodeAt(0);
  const nullAs = Buffer.from(format.nullAs, 'utf8');
  return Array.from({ length: 256 }, (_, letter) => {
    if (letter === NULL_MARK) return nullAs.equals(Buffer.from('\\N')) ? null : nullAs;
    const byte = UNESCAPED[letter]!;
    const escaped =
      escaping && (byte === BACKSLASH || byte === LF || byte === CR || byte === delimiter);
    if (escaped && byte === letter) return null;
    return Buffer.from(escaped ? [BACKSLASH, byte] : [byte]);
  });
}

/** Whole lines as UNLOAD writes them, and where each ends (a value's LF may be inside a line). */
export interface UnloadLines {
  readonly bytes: Buffer;
  /** The offset after each line's final LF. */
  readonly ends: readonly number[];
}

/** The rewritten copy of some COPY text: its bytes, copied in runs between replacements. */
class Output {
  private readonly pieces: Buffer[] = [];
  private readonly ends: number[] = [];
  /** Bytes in `pieces`, which hold the input up to `from`. */
  private length = 0;
  private from = 0;

  constructor(private readonly input: Buffer) {}

  /** The input from `start` to `end` is written as `replacement` (null: as it is). */
  replace(start: number, end: number, replacement: Buffer | null): void {
    if (replacement === null) return;
    this.pieces.push(this.input.subarray(this.from, start), replacement);
    this.length += start - this.from + replacement.length;
    this.from = end;
  }

  /** A line of the input ends at `end` (after its LF). */
  lineEnd(end: number): void {
    this.ends.push(this.length + end - this.from);
  }

  finish(): UnloadLines {
    if (this.from === 0) return { bytes: this.input, ends: this.ends };
    this.pieces.push(this.input.subarray(this.from));
    return { bytes: Buffer.concat(this.pieces), ends: this.ends };
  }
}

/**
 * Rewrites a stream of COPY text into UNLOAD's lines: `push` each piece of COPY output as it
 * arrives (a piece may end anywhere, inside a line, an escape or a character), take back the
 * whole lines it completes, rewritten; `end` checks that the output ended with a line.
 */
export class UnloadTextRewriter {
  private readonly rules: FieldRule[];
  /** Per field, a float's significant digits. */
  private readonly digits: number[];
  private readonly delimiter: number;
  /** One rule for every escape: no floats, and every field that may hold one has the same rule. */
  private readonly uniform: readonly (Buffer | null)[] | null;
  private readonly escapedReplacements: readonly (Buffer | null)[];
  private readonly plainReplacements: readonly (Buffer | null)[];
  private readonly nullAs: Buffer;
  private readonly bits = Buffer.alloc(8);
  private rest: Buffer | null = null;

  constructor(columns: readonly UnloadColumn[], format: LineFormat) {
    this.rules = columns.map((column) => ruleFor(column, format));
    this.digits = columns.map((column) => column.significantDigits ?? 0);
    this.delimiter = format.delimiter.charCodeAt(0);
    this.escapedReplacements = replacements(format, true);
    this.plainReplacements = replacements(format, false);
    this.nullAs = Buffer.from(format.nullAs, 'utf8');
    const kinds = new Set(this.rules.filter((rule) => rule !== 'clean'));
    if (kinds.has('float4') || kinds.has('float8') || kinds.size > 1) this.uniform = null;
    else this.uniform = kinds.has('escaped') ? this.escapedReplacements : this.plainReplacements;
  }

  /** The whole lines `piece` completes, rewritten (none, one or two pieces of lines). */
  push(piece: Buffer): UnloadLines[] {
    const lines: UnloadLines[] = [];
    let from = 0;
    if (this.rest !== null) {
      const firstEnd = piece.indexOf(LF);
      if (firstEnd === -1) {
        this.rest = Buffer.concat([this.rest, piece]);
        return lines;
      }
      lines.push(this.rewrite(Buffer.concat([this.rest, piece.subarray(0, firstEnd + 1)])));
      this.rest = null;
      from = firstEnd + 1;
    }
    const lastEnd = piece.lastIndexOf(LF);
    if (lastEnd >= from) lines.push(this.rewrite(piece.subarray(from, lastEnd + 1)));
    const restFrom = Math.max(from, lastEnd + 1);
    if (restFrom < piece.length) this.rest = Buffer.from(piece.subarray(restFrom));
    return lines;
  }

  /** True if the output so far ended with a whole line. */
  get atLineEnd(): boolean {
    return this.rest === null;
  }

  /** `lines`, whole lines of COPY text, as UNLOAD writes them. */
  private rewrite(lines: Buffer): UnloadLines {
    return this.uniform ? this.rewriteEscapes(lines, this.uniform) : this.rewriteFields(lines);
  }

  /** Every escape by one rule: only the bytes at backslashes and line ends are looked at. */
  private rewriteEscapes(lines: Buffer, replace: readonly (Buffer | null)[]): UnloadLines {
    const output = new Output(lines);
    let backslash = lines.indexOf(BACKSLASH);
    let at = 0;
    while (at < lines.length) {
      const end = lines.indexOf(LF, at) + 1;
      while (backslash !== -1 && backslash < end) {
        output.replace(backslash, backslash + 2, replace[lines[backslash + 1]!]!);
        backslash = lines.indexOf(BACKSLASH, backslash + 2);
      }
      output.lineEnd(end);
      at = end;
    }
    return output.finish();
  }

  /** Field by field, for floats or fields whose escapes follow different rules. */
  private rewriteFields(lines: Buffer): UnloadLines {
    const output = new Output(lines);
    const last = this.rules.length - 1;
    let at = 0;
    let backslash = lines.indexOf(BACKSLASH);
    while (at < lines.length) {
      for (let field = 0; field <= last; field += 1) {
        const rule = this.rules[field];
        const separator = field === last ? LF : this.delimiter;
        if (rule === 'float4' || rule === 'float8') {
          // Hex digits or `\N`: no separator inside.
          const end = lines.indexOf(separator, at);
          output.replace(at, end, this.floatField(lines, at, end, field));
          at = end + 1;
          if (backslash !== -1 && backslash < at) backslash = lines.indexOf(BACKSLASH, at);
          continue;
        }
        const replace = rule === 'escaped' ? this.escapedReplacements : this.plainReplacements;
        for (;;) {
          const end = lines.indexOf(separator, at);
          if (backslash === -1 || backslash > end) {
            at = end + 1;
            break;
          }
          output.replace(backslash, backslash + 2, replace[lines[backslash + 1]!]!);
          at = backslash + 2;
          backslash = lines.indexOf(BACKSLASH, at);
        }
      }
      output.lineEnd(at);
    }
    return output.finish();
  }

  /** Field `field`, a float's bits in hex or `\N`, as Redshift prints it. */
  private floatField(lines: Buffer, start: number, end: number, field: number): Buffer {
    if (lines[start] === BACKSLASH) return this.nullAs;
    for (let index = 0; start + 2 * index < end; index += 1) {
      const high = hexValue(lines[start + 2 * index]!);
      this.bits[index] = (high << 4) | hexValue(lines[start + 2 * index + 1]!);
    }
    const float4 = this.rules[field] === 'float4';
    const number = float4 ? this.bits.readFloatBE(0) : this.bits.readDoubleBE(0);
    return Buffer.from(floatText(number, this.digits[field]!, float4));
  }
}

/** A hex digit's value: 0-9, a-f. */
function hexValue(digit: number): number {
  return digit <= 0x39 ? digit - 0x30 : (digit | 0x20) - 0x57;
}
