import Router from '@koa/router';
import { requireRole, type AppState } from '../auth';
import { validate } from '../validate';
import { ScriptParams } from './schema';
import type { ScriptsService } from './service';

export function scriptsRouter(scripts: ScriptsService): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/scripts' });
  router.use(requireRole('admin', 'agent'));

  router.get('/', async (ctx) => {
    ctx.body = { scripts: await scripts.list() };
  });

  router.get('/:name', validate({ params: ScriptParams }), async (ctx) => {
    ctx.body = { script: await scripts.get(ctx.state.valid.params.name) };
  });

  return router;
}
