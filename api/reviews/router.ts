import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ApproveGroupBody, DiffQuery, GroupParams, RejectGroupBody } from './schema';
import type { ReviewsService } from './service';

export function reviewsRouter(reviews: ReviewsService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(...at('GET /v1/reviews'), async (ctx) => {
    ctx.body = await reviews.list();
  });

  router.get(...at('GET /v1/reviews/diff'), validate({ query: DiffQuery }), async (ctx) => {
    ctx.body = await reviews.diff(ctx.state.valid.query);
  });

  router.post(
    ...at('POST /v1/reviews/:planHash/approve'),
    validate({ params: GroupParams, body: ApproveGroupBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = await reviews.approve(params.planHash, body, ctx.state.principal.name);
    },
  );

  router.post(
    ...at('POST /v1/reviews/:planHash/reject'),
    validate({ params: GroupParams, body: RejectGroupBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = await reviews.reject(params.planHash, body, ctx.state.principal.name);
    },
  );

  return router;
}
