/**
 * COPY … FROM STDIN in one write and one round trip.
 *
 * The usual client (pg-copy-streams) sends the COPY statement, waits for the server's
 * CopyInResponse, then sends each chunk as a CopyData message (a 5-byte header write and
 * a data write) and a CopyDone: four writes and two round trips per batch. Here the
 * statement, the data and CopyDone go as one buffer in one write, before the reply: the
 * server reads the messages in order, so the data is there when it enters COPY mode.
 * If the statement fails before COPY starts (a missing table), the server answers with
 * an error and, as the protocol says, ignores the CopyData and CopyDone that follow.
 *
 * The buffer is laid out by the caller so that the data is encoded once, in place:
 *
 *   [ Query 'Q' | len | sql \0 ][ 'd' | len ][ … COPY data … ][ 'c' | 4 ]
 *   0            dataStart(sql) - 5        dataStart                   + COPY_TRAILER_BYTES
 *
 * Runs through pg's own query queue (a Submittable, as pg-copy-streams is), so the
 * client's timeouts, errors and pool work as for any query.
 */
import type pg from 'pg';

/** Bytes after the data: the CopyDone message. */
export const COPY_TRAILER_BYTES = 5;

/** One COPY statement, framed: where its data starts in a buffer, and how to frame the buffer. */
export class CopyFrame {
  /** The Query message and the CopyData header, which precede the data. */
  private readonly head: Buffer;

  constructor(readonly sql: string) {
    const text = Buffer.from(sql, 'utf8');
    this.head = Buffer.allocUnsafe(5 + text.length + 1 + 5);
    this.head[0] = 0x51; // 'Q'
    this.head.writeInt32BE(4 + text.length + 1, 1);
    text.copy(this.head, 5);
    this.head[5 + text.length] = 0;
    this.head[this.head.length - 5] = 0x64; // 'd'
  }

  /** Offset of the data in a framed buffer. */
  get dataStart(): number {
    return this.head.length;
  }

  /** Buffer bytes for `dataBytes` of data. */
  size(dataBytes: number): number {
    return this.head.length + dataBytes + COPY_TRAILER_BYTES;
  }

  /**
   * Writes the headers and the trailer around `dataBytes` of data already encoded at
   * `dataStart` in `buffer`; returns the framed message (a view of `buffer`).
   */
  frame(buffer: Buffer, dataBytes: number): Buffer {
    const start = this.head.length;
    this.head.copy(buffer, 0);
    buffer.writeInt32BE(4 + dataBytes, start - 4);
    const end = start + dataBytes;
    buffer[end] = 0x63; // 'c'
    buffer.writeInt32BE(4, end + 1);
    return buffer.subarray(0, end + COPY_TRAILER_BYTES);
  }

  /** A framed copy of `data` (one memcpy), for callers whose data is already encoded. */
  wrap(data: Buffer): Buffer {
    const buffer = Buffer.allocUnsafe(this.size(data.length));
    data.copy(buffer, this.dataStart);
    return this.frame(buffer, data.length);
  }
}

interface PgConnection {
  stream: { write(data: Buffer): boolean };
}

/** The COPY as pg runs any query: submit, then the server's replies by handler. */
class PipelinedCopy {
  rowCount = 0;
  private error: Error | undefined;
  readonly done: Promise<number>;
  private settle!: (err: Error | undefined, rows: number) => void;

  constructor(private readonly message: Buffer) {
    this.done = new Promise<number>((resolve, reject) => {
      this.settle = (err, rows) => (err ? reject(err) : resolve(rows));
    });
  }

  submit(connection: PgConnection): void {
    connection.stream.write(this.message);
  }

  /** pg wraps this for its query_timeout; the outcome travels by `done`. */
  callback(): void {}

  handleCopyInResponse(): void {
    // The data is already on its way.
  }

  handleCommandComplete(msg: { text?: string }): void {
    const match = /^COPY (\d+)/.exec(msg?.text ?? '');
    if (match) this.rowCount = Number(match[1]);
  }

  handleReadyForQuery(): void {
    this.callback();
    this.settle(this.error, this.rowCount);
  }

  /** An ErrorResponse (pg then forgets this query: ReadyForQuery goes to no one) or a lost connection. */
  handleError(err: Error): void {
    this.error = err;
    this.callback();
    this.settle(err, 0);
  }

  // Replies a COPY FROM never gets; harmless if a server sends them.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/**
 * Runs a framed COPY (CopyFrame.frame / wrap) on `client`; resolves with the rows
 * copied once the server committed them (autocommit: the statement is its own
 * transaction). Rejects with pg's error (code, message) when the server refused it.
 */
export function copyIn(client: pg.ClientBase, framed: Buffer): Promise<number> {
  const copy = new PipelinedCopy(framed);
  client.query(copy as unknown as pg.Submittable);
  return copy.done;
}
