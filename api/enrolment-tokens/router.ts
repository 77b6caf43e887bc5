import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { CreateEnrolmentTokenBody, EnrolmentTokenParams } from './schema';
import type { EnrolmentTokensService } from './service';

export function enrolmentTokensRouter(tokens: EnrolmentTokensService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/enrolment-tokens'), validate({ body: CreateEnrolmentTokenBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = await tokens.create(ctx.state.valid.body, ctx.state.principal.name);
  });

  router.get(...at('GET /v1/enrolment-tokens'), async (ctx) => {
    ctx.body = { enrolmentTokens: await tokens.list() };
  });

  router.delete(...at('DELETE /v1/enrolment-tokens/:id'), validate({ params: EnrolmentTokenParams }), async (ctx) => {
    ctx.body = { enrolmentToken: await tokens.revoke(ctx.state.valid.params.id, ctx.state.principal.name) };
  });

  return router;
}
