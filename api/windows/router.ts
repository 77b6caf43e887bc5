import Router from '@koa/router';
import { z } from 'zod';
import { requireRole, type Principal } from '../auth';
import { validate, type Valid } from '../validate';
import { CreateWindowBody, UpdateWindowBody, type WindowsService } from './service';

const WindowParams = z.object({ id: z.string().regex(/^win-[0-9a-z]{26}$/, 'a window id like win-<ulid>') });
const PauseBody = z
  .object({ note: z.string().max(500).optional() })
  .strict()
  .default({});

export function windowsRouter(windows: WindowsService): Router {
  const router = new Router({ prefix: '/v1/windows' });
  router.use(requireRole('admin'));
  const by = (state: unknown) => (state as { principal: Principal }).principal.name;

  router.post('/', validate({ body: CreateWindowBody }), async (ctx) => {
    const { body } = ctx.state.valid as Valid<unknown, unknown, CreateWindowBody>;
    ctx.status = 201;
    ctx.body = { window: await windows.create(body, by(ctx.state)) };
  });

  router.get('/', async (ctx) => {
    ctx.body = { windows: await windows.list() };
  });

  router.get('/:id', validate({ params: WindowParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    ctx.body = { window: await windows.get(params.id) };
  });

  router.patch('/:id', validate({ params: WindowParams, body: UpdateWindowBody }), async (ctx) => {
    const { params, body } = ctx.state.valid as Valid<{ id: string }, unknown, UpdateWindowBody>;
    ctx.body = { window: await windows.update(params.id, body) };
  });

  router.delete('/:id', validate({ params: WindowParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    await windows.remove(params.id);
    ctx.status = 204;
  });

  for (const action of ['pause', 'resume'] as const) {
    router.post(`/:id/${action}`, validate({ params: WindowParams, body: PauseBody }), async (ctx) => {
      const { params, body } = ctx.state.valid as Valid<{ id: string }, unknown, { note?: string }>;
      ctx.body = { window: await windows.setPaused(params.id, action === 'pause', body.note, by(ctx.state)) };
    });
  }

  router.post('/:id/trigger', validate({ params: WindowParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    await windows.trigger(params.id);
    ctx.status = 202;
    ctx.body = { triggered: params.id };
  });

  return router;
}
