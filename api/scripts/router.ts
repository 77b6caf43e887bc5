import Router from '@koa/router';
import type { Knex } from 'knex';
import { z } from 'zod';
import { requireRole } from '../auth';
import { notFound } from '../errors';
import { validate, type Valid } from '../validate';
import { getScript, listScripts } from './service';

export function scriptsRouter(db: Knex): Router {
  const router = new Router({ prefix: '/v1/scripts' });
  router.use(requireRole('admin', 'agent'));

  router.get('/', async (ctx) => {
    ctx.body = { scripts: await listScripts(db) };
  });

  router.get(
    '/:name',
    validate({
      params: z.object({ name: z.string().regex(/^[a-z]+-update\.sh$/, 'a script name like apt-update.sh') }),
    }),
    async (ctx) => {
      const { params } = ctx.state.valid as Valid<{ name: string }>;
      const script = await getScript(db, params.name);
      if (!script) throw notFound(`script ${params.name}`);
      ctx.body = { script };
    },
  );

  return router;
}
