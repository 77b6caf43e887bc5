import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ApprovePlanGroupBody, RolloutParams, StartRolloutBody } from './schema';
import type { RolloutsService } from './service';

export function rolloutsRouter(rollouts: RolloutsService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/rollouts'), validate({ body: StartRolloutBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = { rollout: await rollouts.start(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/rollouts'), async (ctx) => {
    ctx.body = { rollouts: await rollouts.list() };
  });

  router.get(...at('GET /v1/rollouts/:id'), validate({ params: RolloutParams }), async (ctx) => {
    ctx.body = { rollout: await rollouts.get(ctx.state.valid.params.id) };
  });

  for (const action of ['pause', 'resume', 'abort'] as const) {
    router.post(...at(`POST /v1/rollouts/:id/${action}`), validate({ params: RolloutParams }), async (ctx) => {
      ctx.status = 202;
      ctx.body = { rollout: await rollouts.control(ctx.state.valid.params.id, action, ctx.state.principal.name) };
    });
  }

  router.post(
    ...at('POST /v1/rollouts/:id/approve'),
    validate({ params: RolloutParams, body: ApprovePlanGroupBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = await rollouts.approvePlan(params.id, body, ctx.state.principal.name);
    },
  );

  return router;
}
