/**
 * Redshift's UNLOAD statement, parsed with Redshift's rules (docs.aws.amazon.com/redshift/latest/
 * dg/r_UNLOAD.html): options in any order and any case, each at most once, the options this
 * emulator does not implement refused by name (NOT_EMULATED), and a LIMIT in the query's outer
 * SELECT refused as Redshift refuses it. Only the statement's text is read here; running it is
 * unload.ts's, so the parser can be held to Redshift's grammar without a database.
 */

import { SyncError } from '../../lambdas/core/errors';
import {
  describePosition,
  RedshiftSqlSyntaxError,
  significantTokens,
  type Token,
} from './redshift-sql';

/** An UNLOAD option Redshift has and this emulator does not implement. */
export class UnsupportedUnloadOptionError extends SyncError {}

/**
 * The delimiters COPY's text format refuses: LF and CR, a backslash, a period, a lower-case
 * letter or a digit (COPY reads escapes made of those), and the `N` of the `\N` its NULL is
 * written as (ProcessCopyOptions in src/backend/commands/copy.c): the emulator prints the rows with
 * COPY (unload-text.ts).
 */
function copyRefusesDelimiter(delimiter: string): boolean {
  return /^[\n\r\\.a-z0-9N]$/.test(delimiter);
}

export type ManifestKind = 'none' | 'plain' | 'verbose';

export interface UnloadOptions {
  /** One ASCII character between fields. */
  readonly delimiter: string;
  /** What a NULL is written as. */
  readonly nullAs: string;
  readonly escape: boolean;
  readonly manifest: ManifestKind;
  readonly parallel: boolean;
  /** Largest file written, in bytes. */
  readonly maxFileSizeBytes: number;
  readonly allowOverwrite: boolean;
  /** Accepted without effect: the folder needs no credentials, encryption or region. */
  readonly iamRole: string;
  readonly kmsKeyId: string | null;
  readonly encrypted: boolean;
  readonly region: string | null;
}

export interface UnloadStatement {
  /** The SELECT, decoded from its literal. */
  readonly query: string;
  /** The TO location, `s3://bucket/name-prefix`. */
  readonly to: string;
  readonly options: UnloadOptions;
}

/** Redshift does not say whether its MB and GB are binary units; taken as binary here. */
const MB = 1024 * 1024;
const GB = 1024 * MB;
const MIN_FILE_SIZE = 5 * MB;
/** Redshift's largest (and default) file: 6.2 GB. */
const MAX_FILE_SIZE = Math.round(6.2 * GB);

/** Options Redshift has that the emulator refuses, with what each would need. */
const NOT_EMULATED: Readonly<Record<string, string>> = {
  FORMAT: 'only the default text format is emulated',
  CSV: 'only the default text format is emulated',
  PARQUET: 'only the default text format is emulated',
  JSON: 'only the default text format is emulated',
  HEADER: 'header lines are not emulated',
  ADDQUOTES: 'quoted fields are not emulated',
  FIXEDWIDTH: 'fixed-width output is not emulated',
  GZIP: 'compressed output is not emulated',
  BZIP2: 'compressed output is not emulated',
  ZSTD: 'compressed output is not emulated',
  PARTITION: 'partitioned output is not emulated',
  CLEANPATH: 'CLEANPATH is not emulated; use a fresh prefix or ALLOWOVERWRITE',
  EXTENSION: 'file name extensions are not emulated',
  ROWGROUPSIZE: 'Parquet row groups are not emulated',
  MASTER_SYMMETRIC_KEY: 'client-side encryption is not emulated',
  CREDENTIALS: 'give IAM_ROLE instead',
  ACCESS_KEY_ID: 'give IAM_ROLE instead',
  SECRET_ACCESS_KEY: 'give IAM_ROLE instead',
  SESSION_TOKEN: 'give IAM_ROLE instead',
};

/** Reads the tokens of one UNLOAD statement; every error names what was expected and where. */
class UnloadParser {
  private index = 0;
  private readonly seen = new Set<string>();

  constructor(
    private readonly sql: string,
    private readonly tokens: readonly Token[],
  ) {}

  private fail(message: string, token: Token | undefined = this.tokens[this.index]): never {
    const where = token ? `at ${describePosition(this.sql, token.start)}` : 'at the end';
    throw new RedshiftSqlSyntaxError(`UNLOAD: ${message}, ${where}`);
  }

  private peek(): Token | undefined {
    return this.tokens[this.index];
  }

  private peekWord(): string | undefined {
    const token = this.peek();
    return token?.kind === 'word' ? token.text.toUpperCase() : undefined;
  }

  private found(): string {
    const token = this.peek();
    return token ? `found ${JSON.stringify(token.text.slice(0, 40))}` : 'found the end';
  }

  private expectPunctuation(char: string, what: string): void {
    if (this.peek()?.text !== char) this.fail(`expected ${what}; ${this.found()}`);
    this.index += 1;
  }

  private expectWord(word: string, what: string): void {
    if (this.peekWord() !== word) this.fail(`expected ${what}; ${this.found()}`);
    this.index += 1;
  }

  private expectString(what: string): string {
    const token = this.peek();
    if (token?.kind !== 'string' || !token.text.startsWith("'")) {
      this.fail(`expected ${what} as a 'quoted' string; ${this.found()}`);
    }
    this.index += 1;
    return token.value;
  }

  private optionalWord(word: string): boolean {
    if (this.peekWord() !== word) return false;
    this.index += 1;
    return true;
  }

  parse(): UnloadStatement {
    this.expectWord('UNLOAD', 'UNLOAD');
    this.expectPunctuation('(', "( 'select-statement' )");
    const queryToken = this.peek();
    const query = this.expectString('the query');
    if (query.trim() === '') this.fail('the query is empty', queryToken);
    this.expectPunctuation(')', "the ) closing the query's parentheses");
    refuseOuterLimit(query);
    this.expectWord('TO', "TO 's3://bucket/prefix'");
    const toToken = this.peek();
    const to = this.expectString('the TO location');
    if (!/^s3:\/\/[^/]+\/./.test(to)) {
      this.fail(
        `TO must be s3://bucket/name-prefix with a bucket and a prefix; got ${JSON.stringify(to)}`,
        toToken,
      );
    }
    return { query, to, options: this.parseOptions() };
  }

  private once(name: string, token: Token): void {
    if (this.seen.has(name)) this.fail(`${name} is given twice`, token);
    this.seen.add(name);
  }

  private parseOptions(): UnloadOptions {
    let delimiter = '|';
    let nullAs = '';
    let escapes = false;
    let manifest: ManifestKind = 'none';
    let parallel = true;
    let maxFileSizeBytes = MAX_FILE_SIZE;
    let allowOverwrite = false;
    let iamRole: string | null = null;
    let kmsKeyId: string | null = null;
    let encrypted = false;
    let encryptedAuto = false;
    let region: string | null = null;

    while (this.index < this.tokens.length) {
      const token = this.peek()!;
      if (token.text === ';' && this.index === this.tokens.length - 1) {
        this.index += 1;
        break;
      }
      const word = this.peekWord();
      if (word === undefined) this.fail(`expected an UNLOAD option; ${this.found()}`);
      if (Object.hasOwn(NOT_EMULATED, word)) {
        throw new UnsupportedUnloadOptionError(
          `UNLOAD option ${word} is not supported by the local UNLOAD emulator (${NOT_EMULATED[word]}), at ${describePosition(this.sql, token.start)}`,
        );
      }
      this.index += 1;
      switch (word) {
        case 'IAM_ROLE':
          this.once(word, token);
          iamRole = this.optionalWord('DEFAULT') ? 'default' : this.expectString('the role ARN');
          break;
        case 'DELIMITER': {
          this.once(word, token);
          this.optionalWord('AS');
          const valueToken = this.peek();
          delimiter = this.expectString('the delimiter');
          const code = delimiter.length === 1 ? delimiter.charCodeAt(0) : 0;
          if (code < 1 || code > 0x7f || delimiter === '\n' || delimiter === '\r') {
            this.fail(
              `DELIMITER must be one ASCII character other than LF and CR; got ${JSON.stringify(delimiter)}`,
              valueToken,
            );
          }
          if (copyRefusesDelimiter(delimiter)) {
            throw new UnsupportedUnloadOptionError(
              `DELIMITER ${JSON.stringify(delimiter)} is not supported by the local UNLOAD emulator (it prints the rows with PostgreSQL's COPY, which reads a backslash, a period, a lower-case letter, a digit or N as part of an escape); use another delimiter, such as '|', at ${describePosition(this.sql, valueToken!.start)}`,
            );
          }
          break;
        }
        case 'NULL':
          this.once(word, token);
          this.optionalWord('AS');
          nullAs = this.expectString('the NULL AS text');
          break;
        case 'ESCAPE':
          this.once(word, token);
          escapes = true;
          break;
        case 'MANIFEST':
          this.once(word, token);
          manifest = this.optionalWord('VERBOSE') ? 'verbose' : 'plain';
          break;
        case 'PARALLEL':
          this.once(word, token);
          if (this.optionalWord('OFF') || this.optionalWord('FALSE')) parallel = false;
          else if (this.optionalWord('ON') || this.optionalWord('TRUE')) parallel = true;
          break;
        case 'MAXFILESIZE':
          this.once(word, token);
          maxFileSizeBytes = this.parseFileSize();
          break;
        case 'ALLOWOVERWRITE':
          this.once(word, token);
          allowOverwrite = true;
          break;
        case 'KMS_KEY_ID':
          this.once(word, token);
          kmsKeyId = this.expectString('the KMS key id');
          break;
        case 'ENCRYPTED':
          this.once(word, token);
          encrypted = true;
          encryptedAuto = this.optionalWord('AUTO');
          break;
        case 'REGION':
          this.once(word, token);
          this.optionalWord('AS');
          region = this.expectString('the region');
          break;
        default:
          this.fail(`${word} is not an UNLOAD option`, token);
      }
    }
    if (iamRole === null) {
      this.fail("UNLOAD needs authorization: add IAM_ROLE 'arn:aws:iam::<account>:role/<name>'");
    }
    if (kmsKeyId !== null && !encrypted) {
      this.fail('KMS_KEY_ID needs ENCRYPTED as well (Redshift refuses it alone)');
    }
    if (kmsKeyId !== null && encryptedAuto) {
      this.fail('ENCRYPTED AUTO cannot be combined with KMS_KEY_ID');
    }
    return {
      delimiter,
      nullAs,
      escape: escapes,
      manifest,
      parallel,
      maxFileSizeBytes,
      allowOverwrite,
      iamRole,
      kmsKeyId,
      encrypted,
      region,
    };
  }

  private parseFileSize(): number {
    this.optionalWord('AS');
    const numberToken = this.peek();
    if (numberToken?.kind !== 'number') {
      this.fail(`expected MAXFILESIZE's size, a number of MB or GB; ${this.found()}`);
    }
    this.index += 1;
    let unit = MB;
    if (this.optionalWord('GB')) unit = GB;
    else this.optionalWord('MB');
    const bytes = Math.round(Number(numberToken.text) * unit);
    if (!(bytes >= MIN_FILE_SIZE && bytes <= MAX_FILE_SIZE)) {
      this.fail('MAXFILESIZE must be from 5 MB to 6.2 GB', numberToken);
    }
    return bytes;
  }
}

/** Redshift refuses a LIMIT in the outer SELECT of an UNLOAD's query. */
function refuseOuterLimit(query: string): void {
  let depth = 0;
  for (const token of significantTokens(query)) {
    if (token.text === '(') depth += 1;
    else if (token.text === ')') depth -= 1;
    else if (depth === 0 && token.kind === 'word' && token.text.toUpperCase() === 'LIMIT') {
      throw new RedshiftSqlSyntaxError(
        `UNLOAD: the query cannot use LIMIT in its outer SELECT (Redshift refuses it); put the LIMIT in a subquery, at ${describePosition(query, token.start)} of the query`,
      );
    }
  }
}

/** True when the statement is an UNLOAD (its first word). */
export function isUnload(sql: string): boolean {
  const first = significantTokens(sql)[0];
  return first?.kind === 'word' && first.text.toUpperCase() === 'UNLOAD';
}

/** Parses an UNLOAD statement with Redshift's rules; options in any order, any case. */
export function parseUnload(sql: string): UnloadStatement {
  return new UnloadParser(sql, significantTokens(sql)).parse();
}
