import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ScriptParams } from './schema';
import type { ScriptsService } from './service';

export function scriptsRouter(scripts: ScriptsService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(...at('GET /v1/scripts'), async (ctx) => {
    ctx.body = { scripts: await scripts.list() };
  });

  router.get(...at('GET /v1/scripts/:name'), validate({ params: ScriptParams }), async (ctx) => {
    ctx.body = { script: await scripts.get(ctx.state.valid.params.name) };
  });

  return router;
}
