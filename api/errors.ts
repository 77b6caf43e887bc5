import type { Context, Next } from 'koa';
import { z } from 'zod';
import type { ApiErrorCode } from '../contract';

/** The HTTP status of each error code (the OpenAPI document lists them per route). */
export const STATUS_OF: Record<ApiErrorCode, number> = {
  validation_failed: 400,
  unauthorized: 401,
  agent_revoked: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  agent_not_accepted: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  internal: 500,
};

/** A domain error with a stable code, rendered as `{ error: { code, message, field? } }`. */
export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
  get status(): number {
    return STATUS_OF[this.code];
  }
}

export const notFound = (what: string) => new ApiError('not_found', `${what} not found`);

export function fromZod(err: z.ZodError, where: string): ApiError {
  const issue = err.issues[0];
  const field = issue.path.map(String).join('.') || undefined;
  return new ApiError('validation_failed', `${where}${field ? ` field ${field}` : ''}: ${issue.message}`, field);
}

/** Maps every thrown error to the JSON error shape; unknown errors become 500 without internals. */
export async function errorMiddleware(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
    if (ctx.status === 404 && ctx.body === undefined)
      throw new ApiError('not_found', `no route ${ctx.method} ${ctx.path}`);
    // The router's answer to a method a path does not take (501 for one it knows nowhere); Allow stays.
    if ((ctx.status === 405 || ctx.status === 501) && ctx.body === undefined)
      throw new ApiError('method_not_allowed', `${ctx.method} is not allowed on ${ctx.path}`);
  } catch (err) {
    let apiError: ApiError;
    if (err instanceof ApiError) apiError = err;
    else {
      ctx.app.emit('error', err, ctx);
      apiError = new ApiError('internal', 'internal error');
    }
    ctx.status = apiError.status;
    ctx.body = {
      error: { code: apiError.code, message: apiError.message, ...(apiError.field ? { field: apiError.field } : {}) },
    };
  }
}
