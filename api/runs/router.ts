import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { ApproveBody, ListRunsQuery, RejectBody, RunParams, StartRunBody } from './schema';
import type { RunsService } from './service';

export function runsRouter(runs: RunsService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/runs'), validate({ body: StartRunBody }), async (ctx) => {
    ctx.status = 202;
    ctx.body = { run: await runs.start(ctx.state.valid.body, ctx.state.principal.name) };
  });

  router.get(...at('GET /v1/runs'), validate({ query: ListRunsQuery }), async (ctx) => {
    ctx.body = await runs.list(ctx.state.valid.query);
  });

  router.get(...at('GET /v1/runs/:id'), validate({ params: RunParams }), async (ctx) => {
    ctx.body = { run: await runs.get(ctx.state.valid.params.id) };
  });

  router.post(...at('POST /v1/runs/:id/approve'), validate({ params: RunParams, body: ApproveBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { status: await runs.approve(params.id, body, ctx.state.principal.name) };
  });

  router.post(...at('POST /v1/runs/:id/reject'), validate({ params: RunParams, body: RejectBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { status: await runs.reject(params.id, body.reason, ctx.state.principal.name) };
  });

  router.post(...at('POST /v1/runs/:id/cancel'), validate({ params: RunParams }), async (ctx) => {
    const { id } = ctx.state.valid.params;
    const { principal } = ctx.state;
    await runs.cancel(id, principal.name, principal.role === 'requester');
    ctx.status = 202;
    ctx.body = { cancelling: id };
  });

  return router;
}
