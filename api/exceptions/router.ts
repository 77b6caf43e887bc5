import Router from '@koa/router';
import type { Knex } from 'knex';
import { z } from 'zod';
import { AgentId } from '../../contract';
import { requireRole, type Principal } from '../auth';
import { validate, type Valid } from '../validate';
import { CreateExceptionBody, exceptionsService, UpdateExceptionBody } from './service';

// The path names the agent as :agentId so a bad one is reported as the field agentId.
const AgentParams = z.object({ agentId: AgentId });
const ExceptionParams = AgentParams.extend({
  id: z.string().regex(/^exc-[0-9a-z]{26}$/, 'an exception id like exc-<ulid>'),
});

export function exceptionsRouter(db: Knex): Router {
  const exceptions = exceptionsService(db);
  const router = new Router({ prefix: '/v1/agents/:agentId/exceptions' });
  router.use(requireRole('admin'));

  router.get('/', validate({ params: AgentParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ agentId: string }>;
    ctx.body = { exceptions: await exceptions.list(params.agentId) };
  });

  router.post('/', validate({ params: AgentParams, body: CreateExceptionBody }), async (ctx) => {
    const { params, body } = ctx.state.valid as Valid<{ agentId: string }, unknown, CreateExceptionBody>;
    ctx.status = 201;
    ctx.body = { exception: await exceptions.create(params.agentId, body, (ctx.state.principal as Principal).name) };
  });

  router.patch('/:id', validate({ params: ExceptionParams, body: UpdateExceptionBody }), async (ctx) => {
    const { params, body } = ctx.state.valid as Valid<{ agentId: string; id: string }, unknown, UpdateExceptionBody>;
    ctx.body = { exception: await exceptions.update(params.agentId, params.id, body) };
  });

  router.delete('/:id', validate({ params: ExceptionParams }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ agentId: string; id: string }>;
    await exceptions.remove(params.agentId, params.id);
    ctx.status = 204;
  });

  return router;
}
