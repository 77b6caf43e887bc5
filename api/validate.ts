import type { Context, Next } from 'koa';
import type { z } from 'zod';
import { fromZod } from './errors';

/** Parsed, typed request parts, set by `validate` for the handler. */
export interface Valid<P = unknown, Q = unknown, B = unknown> {
  params: P;
  query: Q;
  body: B;
}

interface Schemas<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  params?: P;
  query?: Q;
  body?: B;
}

/** The one validation middleware: zod-parses params, query and body; 400 names the field. */
export function validate<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(schemas: Schemas<P, Q, B>) {
  return async (ctx: Context & { params?: Record<string, string> }, next: Next) => {
    const valid: Valid = { params: undefined, query: undefined, body: undefined };
    for (const part of ['params', 'query', 'body'] as const) {
      const schema = schemas[part];
      if (!schema) continue;
      const input =
        part === 'params' ? ctx.params : part === 'query' ? ctx.query : (ctx.request as { body?: unknown }).body;
      const parsed = schema.safeParse(input ?? (part === 'body' ? undefined : {}));
      if (!parsed.success) throw fromZod(parsed.error, part === 'body' ? 'request body' : part);
      valid[part] = parsed.data;
    }
    ctx.state.valid = valid;
    await next();
  };
}
