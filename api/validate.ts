import type { RouterMiddleware } from '@koa/router';
import type { z } from 'zod';
import type { AppState } from './auth';
import { fromZod } from './errors';

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

/**
 * The one validation middleware: zod-parses params, query and body; 400 names the field. Its
 * type carries the parsed parts to the handler after it, as `ctx.state.valid`.
 */
export function validate<S extends Schemas>(schemas: S): RouterMiddleware<AppState & { valid: Valid<S> }> {
  return async (ctx, next) => {
    const valid: Record<keyof Schemas, unknown> = { params: undefined, query: undefined, body: undefined };
    for (const part of ['params', 'query', 'body'] as const) {
      const schema = schemas[part];
      if (!schema) continue;
      const input =
        part === 'params' ? ctx.params : part === 'query' ? ctx.query : (ctx.request as { body?: unknown }).body;
      const parsed = schema.safeParse(input ?? (part === 'body' ? undefined : {}));
      if (!parsed.success) throw fromZod(parsed.error, part === 'body' ? 'request body' : part);
      valid[part] = parsed.data;
    }
    // Each part was parsed by the schema Valid<S> names for it.
    ctx.state.valid = valid as Valid<S>;
    await next();
  };
}
