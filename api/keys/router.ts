import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { CreateKeyBody, KeyParams } from './schema';
import type { KeysService } from './service';

/** Approver keys (issue 10): public keys whose signatures approve runs (docs/signed-approvals.md). */
export function keysRouter(keys: KeysService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/keys'), validate({ body: CreateKeyBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { key: await keys.create(ctx.state.valid.body, ctx.state.principal) };
  });

  router.get(...at('GET /v1/keys'), async (ctx) => {
    ctx.body = { keys: await keys.list() };
  });

  router.delete(...at('DELETE /v1/keys/:id'), validate({ params: KeyParams }), async (ctx) => {
    ctx.body = { key: await keys.revoke(ctx.state.valid.params.id, ctx.state.principal) };
  });

  return router;
}
