import Router from '@koa/router';
import { requireRole, type AppState } from '../auth';
import { validate } from '../validate';
import { CreateEnrolmentTokenBody, EnrolmentTokenParams } from './schema';
import type { EnrolmentTokensService } from './service';

export function enrolmentTokensRouter(tokens: EnrolmentTokensService): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/enrolment-tokens' });
  router.use(requireRole('admin'));

  router.post('/', validate({ body: CreateEnrolmentTokenBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = await tokens.create(ctx.state.valid.body, ctx.state.principal.name);
  });

  router.get('/', async (ctx) => {
    ctx.body = { enrolmentTokens: await tokens.list() };
  });

  router.delete('/:id', validate({ params: EnrolmentTokenParams }), async (ctx) => {
    ctx.body = { enrolmentToken: await tokens.revoke(ctx.state.valid.params.id, ctx.state.principal.name) };
  });

  return router;
}
