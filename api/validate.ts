import { bodyParser } from '@koa/bodyparser';
import type { RouterMiddleware } from '@koa/router';
import type { Context } from 'koa';
import type { z } from 'zod';
import type { AppState } from './auth';
import { ApiError, fromZod } from './errors';

/** Zod schemas for the parts of a request a route reads. */
export interface Schemas {
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
}

/** Parsed, typed request parts, set by `validate` for the handler (undefined where no schema). */
export type Valid<S extends Schemas> = {
  [Part in keyof Required<Schemas>]: S[Part] extends z.ZodType ? z.output<S[Part]> : undefined;
};

const BODY_LIMIT = '1mb';
// The limit counts the bytes after decompression, so a small gzip bomb stops at 1 MB too.
const parseJson = bodyParser({ enableTypes: ['json'], jsonLimit: BODY_LIMIT, encoding: 'utf-8' });

/**
 * The request body, read only here: after authentication and the role check (they run before
 * `validate`) and after params and query passed, so a refused request costs no body read or
 * decompression. Every way a body can be unreadable is a 4xx in the error shape.
 */
async function readBody(ctx: Context): Promise<unknown> {
  const declared = ctx.get('transfer-encoding') !== '' || Number(ctx.get('content-length') || 0) > 0;
  if (declared && !ctx.is('application/json', '+json'))
    throw new ApiError('unsupported_media_type', 'request body: Content-Type must be application/json', 'body');
  try {
    await parseJson(ctx, () => Promise.resolve());
  } catch (err) {
    // A read given up half-way (a body that does not decompress) leaves the rest of the body on
    // the connection, where the next request on it would be parsed from: drain and discard it,
    // as finalhandler does. (Node itself discards bodies that were never read.)
    ctx.req.unpipe();
    ctx.req.resume();
    const status = (err as { status?: unknown } | null)?.status;
    if (status === 413) throw new ApiError('payload_too_large', `request body: larger than ${BODY_LIMIT}`, 'body');
    // raw-body's encoding.unsupported and inflation's unknown Content-Encoding
    if (status === 415)
      throw new ApiError(
        'unsupported_media_type',
        'request body: Content-Encoding must be gzip, deflate or br',
        'body',
      );
    // Not JSON, cut short, or not what its Content-Encoding says (zlib errors carry no status).
    throw new ApiError(
      'validation_failed',
      `request body: ${err instanceof Error ? err.message : 'unreadable'}`,
      'body',
    );
  }
  return (ctx.request as { body?: unknown }).body;
}

/**
 * The one validation middleware: zod-parses params, query and body; 400 names the field. Its
 * type carries the parsed parts to the handler after it, as `ctx.state.valid`.
 */
export function validate<S extends Schemas>(schemas: S): RouterMiddleware<AppState & { valid: Valid<S> }> {
  const middleware: RouterMiddleware<AppState & { valid: Valid<S> }> = async (ctx, next) => {
    const valid: Record<keyof Schemas, unknown> = { params: undefined, query: undefined, body: undefined };
    for (const part of ['params', 'query', 'body'] as const) {
      const schema = schemas[part];
      if (!schema) continue;
      const input = part === 'params' ? ctx.params : part === 'query' ? ctx.query : await readBody(ctx);
      const parsed = schema.safeParse(input ?? (part === 'body' ? undefined : {}));
      if (!parsed.success) throw fromZod(parsed.error, part === 'body' ? 'request body' : part);
      valid[part] = parsed.data;
    }
    // Each part was parsed by the schema Valid<S> names for it.
    ctx.state.valid = valid as Valid<S>;
    await next();
  };
  VALIDATED.set(middleware, schemas);
  return middleware;
}

/**
 * The schemas each `validate` middleware checks, keyed by the middleware itself: the OpenAPI
 * document (api/openapi/) reads them off the router's layers, so it describes exactly what a
 * route validates.
 */
const VALIDATED = new WeakMap<object, Schemas>();
export const schemasOf = (middleware: unknown): Schemas | undefined =>
  typeof middleware === 'function' ? VALIDATED.get(middleware) : undefined;
