import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { HttpError, sendError } from './errors.js';

/**
 * Bearer-token checks for writes. The token is kept only as its SHA-256 digest, and a
 * presented token is hashed the same way before `timingSafeEqual`: both sides are 32
 * bytes, so neither the comparison's time nor an early length mismatch tells how much of
 * a guess was right, or how long the token is. No cookies are read or set (no CSRF).
 */
export class TokenCheck {
  private readonly digest: Buffer | undefined;

  constructor(token: string | undefined) {
    this.digest = token === undefined || token === '' ? undefined : sha256(token);
  }

  /** No token configured: every write is refused (the server is read-only). */
  get readOnly(): boolean {
    return this.digest === undefined;
  }

  /** Whether an `Authorization` header value carries the token. */
  allows(header: string | undefined): boolean {
    if (this.digest === undefined || header === undefined) return false;
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) return false;
    return timingSafeEqual(sha256(match[1]!), this.digest);
  }

  /**
   * A fastify `onRequest` hook for write routes: it runs before the body is read, so a
   * client without the token cannot make the server buffer or parse anything.
   */
  readonly hook = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (this.readOnly) {
      await sendError(reply, new HttpError(401, 'TRIB_ERR_HTTP_READ_ONLY'));
      return;
    }
    if (!this.allows(request.headers.authorization)) {
      const sent = request.headers.authorization === undefined ? ' (none was sent)' : ' (the one sent does not match)';
      await sendError(reply, new HttpError(401, 'TRIB_ERR_HTTP_UNAUTHORIZED', [sent], {}, { 'www-authenticate': 'Bearer realm="tributary"' }));
    }
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
