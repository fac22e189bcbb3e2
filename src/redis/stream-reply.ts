/**
 * The engine's hot read, decoded by hand: an XREADGROUP reply (RESP2) turned into stream
 * entries straight from the bytes Redis sent, with one allocation per reply instead of
 * several per field. A general RESP decoder (node-redis's) builds an array per entry, an
 * array per field list and a Buffer view per field name and value; here every field is a
 * pair of offsets into the reply's one buffer, kept in one Int32Array per reply, and an
 * entry materialises Buffers only for the fields a stage asks for (RawStreamEntry).
 *
 * Pure: bytes in, entries out. The connection that feeds it is stream-reader.ts.
 */
import { TributaryError } from '../errors.js';
import { RawStreamEntry } from './commands.js';
import { RespError } from './pipe.js';

const CR = 0x0d;

/**
 * Walks RESP2 replies element by element to find where one ends, without building any
 * value, and resumes where it stopped when the bytes run out: a large reply arriving in
 * many socket chunks is walked once in all, not once per chunk.
 */
export class ReplyScanner {
  /** Elements still expected at each open array level (the bottom is the reply itself). */
  private stack: number[] = [1];
  /** Where the walk stands. */
  pos = 0;

  /** Starts a new reply at `pos`. */
  reset(pos: number): void {
    this.stack = [1];
    this.pos = pos;
  }

  /**
   * Advances over the complete elements of `buf` up to `end`; true when the reply is
   * whole (it ends at `this.pos`), false when more bytes are needed.
   */
  scan(buf: Buffer, end: number): boolean {
    const stack = this.stack;
    let pos = this.pos;
    while (stack.length > 0) {
      const type = buf[pos];
      let next: number;
      if (type === 0x2a || type === 0x24) {
        // `*<n>` an array (its n elements follow) or `$<n>` a bulk string (n bytes follow)
        const line = readLength(buf, pos + 1, end);
        if (line < 0) break;
        const n = header;
        if (type === 0x2a) {
          pos = line;
          if (n > 0) {
            stack.push(n);
            continue;
          }
          next = line;
        } else {
          next = n < 0 ? line : line + n + 2;
          if (next > end) break;
        }
      } else if (type === 0x2b || type === 0x2d || type === 0x3a) {
        const eol = buf.indexOf(CR, pos);
        if (eol < 0 || eol + 1 >= end) break;
        next = eol + 2;
      } else if (pos >= end) {
        break;
      } else {
        throw protocolError(type);
      }
      pos = next;
      // One element done: close every array it completes.
      while (stack.length > 0 && --stack[stack.length - 1]! === 0) stack.pop();
    }
    this.pos = pos;
    return stack.length === 0;
  }
}

/** The number readLength read last. */
let header = 0;

/**
 * Reads the decimal length of a `*` or `$` line starting at `from` (after the type byte)
 * into `header`; returns the offset after its CRLF, or -1 when the line does not end
 * before `end`. Header lines are a few bytes: a byte loop beats a native indexOf call.
 */
function readLength(buf: Buffer, from: number, end: number): number {
  let i = from;
  let sign = 1;
  if (buf[i] === 0x2d) {
    sign = -1;
    i++;
  }
  let n = 0;
  const first = i;
  for (; i < end; i++) {
    const c = buf[i]!;
    if (c === CR) break;
    const d = c - 0x30;
    if (d < 0 || d > 9) throw shapeError(`a length that is not a number: ${JSON.stringify(buf.toString('latin1', from, Math.min(end, from + 20)))}`);
    n = n * 10 + d;
  }
  if (i + 1 >= end) return -1;
  if (i === first || buf[i + 1] !== 0x0a) throw shapeError('a malformed length line');
  header = sign * n;
  return i + 2;
}

/** What an XREADGROUP reply for one stream holds. */
export interface StreamReadResult {
  entries: RawStreamEntry[];
  /** IDs whose entry no longer exists (history reads: `[id, nil]`). */
  deletedIds: string[];
}

/**
 * Decodes a whole XREADGROUP / XREAD reply for one stream, `buf[start, end)` (as
 * ReplyScanner delimited it): nil (a timeout) is no entries; an error reply is returned
 * as a RespError; entries keep views of `buf`, which must not be reused while they live.
 */
export function decodeStreamRead(buf: Buffer, start: number, end: number): StreamReadResult | RespError {
  // Field offsets are kept in an Int32Array: a reply past 2 GiB is refused (the read is
  // then lost, and its entries claimed back a few at a time).
  if (end > 2 ** 31 - 1) throw shapeError(`a reply of ${end} bytes, over 2 GiB`);
  const d = new Decoder(buf, start, end);
  const type = buf[start];
  if (type === 0x2d) return new RespError(buf.toString('utf8', start + 1, d.lineEnd(start)));
  const streams = d.arrayHeader();
  const result: StreamReadResult = { entries: [], deletedIds: [] };
  if (streams <= 0) return result; // nil: the block time passed with nothing new
  if (streams !== 1) throw shapeError(`${streams} streams in the reply`);
  if (d.arrayHeader() !== 2) throw shapeError('a stream item is not [key, entries]');
  d.skipBulk(); // the key
  const count = d.arrayHeader();
  if (count <= 0) return result;
  // Every field's [start, end) in buf, for all the entries of the reply.
  let offsets = new Int32Array(count * 16);
  let used = 0;
  for (let e = 0; e < count; e++) {
    if (d.arrayHeader() !== 2) throw shapeError('an entry is not [id, fields]');
    const id = d.latin1Bulk();
    const fields = d.arrayHeader();
    if (fields < 0) {
      result.deletedIds.push(id);
      continue;
    }
    if (used + fields * 2 > offsets.length) {
      const grown = new Int32Array(Math.max(offsets.length * 2, used + fields * 2));
      grown.set(offsets.subarray(0, used));
      offsets = grown;
    }
    const first = used;
    for (let f = 0; f < fields; f++) {
      const len = d.bulkHeader();
      offsets[used++] = d.pos;
      offsets[used++] = d.pos + len;
      d.pos += len + 2;
    }
    result.entries.push(RawStreamEntry.packed(id, buf, offsets, first, fields));
  }
  if (d.pos !== end) throw shapeError(`${end - d.pos} bytes after the reply`);
  return result;
}

/** A cursor over a reply known to be complete. */
class Decoder {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly end: number,
  ) {}

  lineEnd(at: number): number {
    const eol = this.buf.indexOf(CR, at);
    if (eol < 0 || eol >= this.end) throw shapeError('a line without its end');
    return eol;
  }

  /** `*<n>`: n (-1 for nil). */
  arrayHeader(): number {
    if (this.buf[this.pos] !== 0x2a) throw shapeError(`an array expected, got ${describe(this.buf[this.pos])}`);
    return this.header();
  }

  /** `$<n>`: n, the cursor at the bytes. A nil bulk string is refused (no field is nil). */
  bulkHeader(): number {
    if (this.buf[this.pos] !== 0x24) throw shapeError(`a bulk string expected, got ${describe(this.buf[this.pos])}`);
    const n = this.header();
    if (n < 0) throw shapeError('a nil bulk string');
    if (this.pos + n + 2 > this.end) throw shapeError('a bulk string past the end');
    return n;
  }

  skipBulk(): void {
    const n = this.bulkHeader(); // moves pos to the bytes
    this.pos += n + 2;
  }

  latin1Bulk(): string {
    const n = this.bulkHeader();
    const s = this.buf.toString('latin1', this.pos, this.pos + n);
    this.pos += n + 2;
    return s;
  }

  private header(): number {
    const line = readLength(this.buf, this.pos + 1, this.end);
    if (line < 0) throw shapeError('a line without its end');
    this.pos = line;
    return header;
  }
}

function describe(type: number | undefined): string {
  return type === undefined ? 'the end' : JSON.stringify(String.fromCharCode(type));
}

function protocolError(type: number | undefined): TributaryError {
  return new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`unexpected reply type ${describe(type)}: not a Redis RESP2 reply`]);
}

function shapeError(what: string): TributaryError {
  return new TributaryError('TRIB_ERR_REDIS_UNAVAILABLE', [`an XREADGROUP reply of an unexpected shape: ${what}`]);
}
