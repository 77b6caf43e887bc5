import Router from '@koa/router';
import { z } from 'zod';
import { ApproveDecision, RejectDecision, RUN_ID_PATTERN } from '../../contract';
import { requireRole, type Principal } from '../auth';
import { validate, type Valid } from '../validate';
import { ListRunsQuery, StartRunBody, type RunsService } from './service';

const RunParams = z.object({
  id: z.string().regex(RUN_ID_PATTERN, 'a run id like patch-run.<agent>.<ulid>'),
});
const ApproveBody = ApproveDecision.pick({ planHash: true }).strict();
const RejectBody = RejectDecision.pick({ reason: true }).strict();

export function runsRouter(runs: RunsService): Router {
  const router = new Router({ prefix: '/v1/runs' });
  router.use(requireRole('admin'));
  const by = (state: { principal: Principal }) => state.principal.name;

  router.post('/', validate({ body: StartRunBody }), async (ctx) => {
    const { body } = ctx.state.valid as Valid<unknown, unknown, StartRunBody>;
    ctx.status = 202;
    ctx.body = { run: await runs.start(body, by(ctx.state)) };
  });

  router.get('/', validate({ query: ListRunsQuery }), async (ctx) => {
    const { query } = ctx.state.valid as Valid<unknown, ListRunsQuery>;
    ctx.body = await runs.list(query);
  });

  router.get('/:id', validate({ params: RunParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    ctx.body = { run: await runs.get(params.id) };
  });

  router.post('/:id/approve', validate({ params: RunParams, body: ApproveBody }), async (ctx) => {
    const { params, body } = ctx.state.valid as Valid<{ id: string }, unknown, { planHash: string }>;
    ctx.body = { status: await runs.approve(params.id, body.planHash, by(ctx.state)) };
  });

  router.post('/:id/reject', validate({ params: RunParams, body: RejectBody }), async (ctx) => {
    const { params, body } = ctx.state.valid as Valid<{ id: string }, unknown, { reason: string }>;
    ctx.body = { status: await runs.reject(params.id, body.reason, by(ctx.state)) };
  });

  router.post('/:id/cancel', validate({ params: RunParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    await runs.cancel(params.id);
    ctx.status = 202;
    ctx.body = { cancelling: params.id };
  });

  return router;
}
