import Router from '@koa/router';
import { requireRole, type AppState } from '../auth';
import { validate } from '../validate';
import { CreateKeyBody, KeyParams } from './schema';
import type { KeysService } from './service';

/** Approver keys (issue 10). Admin only for now: an admin registers keys for named approvers. */
export function keysRouter(keys: KeysService): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/keys' });
  router.use(requireRole('admin'));

  router.post('/', validate({ body: CreateKeyBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { key: await keys.create(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get('/', async (ctx) => {
    ctx.body = { keys: await keys.list() };
  });

  router.delete('/:id', validate({ params: KeyParams }), async (ctx) => {
    ctx.body = { key: await keys.revoke(ctx.state.valid.params.id, ctx.state.principal.name) };
  });

  return router;
}
