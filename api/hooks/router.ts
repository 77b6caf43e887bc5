import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { HookParams, PutHookBody } from './schema';
import type { HooksService } from './service';

export function hooksRouter(hooks: HooksService): Router<AppState> {
  const router = new Router<AppState>();

  router.put(...at('PUT /v1/hooks/:name'), validate({ params: HookParams, body: PutHookBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { hook: await hooks.put(params.name, body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/hooks'), async (ctx) => {
    ctx.body = { hooks: await hooks.list() };
  });

  router.get(...at('GET /v1/hooks/:name'), validate({ params: HookParams }), async (ctx) => {
    ctx.body = { hook: await hooks.get(ctx.state.valid.params.name) };
  });

  return router;
}
