import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { BaselineBody, BaselineParams } from './schema';
import type { BaselinesService } from './service';

/** Patch baselines (issue 12): auto-approval rules for the agents a label selector matches. */
export function baselinesRouter(baselines: BaselinesService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/baselines'), validate({ body: BaselineBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { baseline: await baselines.create(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/baselines'), async (ctx) => {
    ctx.body = { baselines: await baselines.list() };
  });

  router.get(...at('GET /v1/baselines/:id'), validate({ params: BaselineParams }), async (ctx) => {
    ctx.body = { baseline: await baselines.get(ctx.state.valid.params.id) };
  });

  /** The whole baseline, replaced (PUT): what is in force is exactly what the admin sent. */
  router.put(...at('PUT /v1/baselines/:id'), validate({ params: BaselineParams, body: BaselineBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { baseline: await baselines.replace(params.id, body, ctx.state.principal.name) };
  });

  router.delete(...at('DELETE /v1/baselines/:id'), validate({ params: BaselineParams }), async (ctx) => {
    await baselines.remove(ctx.state.valid.params.id, ctx.state.principal.name);
    ctx.status = 204;
  });

  return router;
}
