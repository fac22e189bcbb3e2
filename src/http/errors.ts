import type { FastifyReply } from 'fastify';
import { ERRORS, TributaryError, type ErrorCode } from '../errors.js';
import { redactSecrets } from '../config/index.js';

/** The body of every error the HTTP server answers: a code and a message for a person. */
export interface HttpErrorBody {
  error: { code: ErrorCode; message: string; [more: string]: unknown };
}

/**
 * An error with its HTTP status: what a route throws (or returns through `sendError`).
 * `extra` is merged into the `error` object (e.g. `errors` of a rejected ingest).
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    /** The catalogue message's arguments, or the whole message as a string (for servers' faults: never a driver's text). */
    args: readonly unknown[] | string = [],
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(typeof args === 'string' ? args : new TributaryError(code, args).message);
    this.name = 'HttpError';
  }
}

/** Answers a coded JSON error; the message is redacted once more, whatever built it. */
export function sendError(reply: FastifyReply, err: HttpError): FastifyReply {
  for (const [name, value] of Object.entries(err.headers)) void reply.header(name, value);
  const body: HttpErrorBody = { error: { code: err.code, message: redactSecrets(err.message), ...err.extra } };
  return reply.code(err.status).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body);
}

/**
 * The status of a TributaryError raised below a route (the producer, Redis): a server
 * that does not answer is 503 (try again), anything else the server's own fault (500).
 */
export function statusOf(code: ErrorCode): number {
  if (code === 'TRIB_ERR_REDIS_UNAVAILABLE' || code === 'TRIB_ERR_REDIS_OOM' || code === 'TRIB_ERR_POSTGRES_UNAVAILABLE') return 503;
  return ERRORS[code].retryable ? 503 : 500;
}
