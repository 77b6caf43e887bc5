import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { CreateWindowBody, PauseBody, UpdateWindowBody, WindowParams } from './schema';
import type { WindowsService } from './service';

export function windowsRouter(windows: WindowsService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/windows'), validate({ body: CreateWindowBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { window: await windows.create(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/windows'), async (ctx) => {
    ctx.body = { windows: await windows.list() };
  });

  router.get(...at('GET /v1/windows/:id'), validate({ params: WindowParams }), async (ctx) => {
    ctx.body = { window: await windows.get(ctx.state.valid.params.id) };
  });

  router.patch(
    ...at('PATCH /v1/windows/:id'),
    validate({ params: WindowParams, body: UpdateWindowBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = { window: await windows.update(params.id, body, ctx.state.principal.name) };
    },
  );

  router.delete(...at('DELETE /v1/windows/:id'), validate({ params: WindowParams }), async (ctx) => {
    await windows.remove(ctx.state.valid.params.id, ctx.state.principal.name);
    ctx.status = 204;
  });

  for (const action of ['pause', 'resume'] as const) {
    router.post(
      ...at(`POST /v1/windows/:id/${action}`),
      validate({ params: WindowParams, body: PauseBody }),
      async (ctx) => {
        const { params, body } = ctx.state.valid;
        ctx.body = {
          window: await windows.setPaused(params.id, action === 'pause', body.note, ctx.state.principal.name),
        };
      },
    );
  }

  router.post(...at('POST /v1/windows/:id/trigger'), validate({ params: WindowParams }), async (ctx) => {
    const { id } = ctx.state.valid.params;
    await windows.trigger(id, ctx.state.principal.name);
    ctx.status = 202;
    ctx.body = { triggered: id };
  });

  return router;
}
