import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import type { OutputService } from './output';
import { OutputQuery, PostOutputBody, RunParams } from './schema';

/** Issue 17: a run's live output (docs/review-desk.md "Live output"). */
export function outputRouter(output: OutputService): Router<AppState> {
  const router = new Router<AppState>();

  // Only the run's own agent (the role table admits agents, the service checks it is this run's).
  router.post(...at('POST /v1/runs/:id/output'), validate({ params: RunParams, body: PostOutputBody }), async (ctx) => {
    const { principal } = ctx.state;
    const agentId = principal.role === 'agent' ? principal.agentId : '';
    ctx.body = await output.post(ctx.state.valid.params.id, agentId, ctx.state.valid.body);
  });

  router.get(...at('GET /v1/runs/:id/output'), validate({ params: RunParams, query: OutputQuery }), async (ctx) => {
    const { params, query } = ctx.state.valid;
    if (query.follow === '1') return output.follow(ctx, params.id, query);
    ctx.body =
      query.after !== undefined || query.waitMs > 0
        ? await output.after(params.id, query)
        : await output.record(params.id, query.step);
  });

  return router;
}
