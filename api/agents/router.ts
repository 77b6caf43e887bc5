import Router from '@koa/router';
import type { Knex } from 'knex';
import { z } from 'zod';
import { AgentId, AgentRegistration } from '../../contract';
import { requireRole, type Principal } from '../auth';
import { ApiError, notFound } from '../errors';
import { validate, type Valid } from '../validate';
import { getAgent, listAgents, registerAgent, touchAgent } from './service';

export function agentsRouter(db: Knex): Router {
  const router = new Router({ prefix: '/v1/agents' });

  router.post('/', requireRole('admin', 'enrol'), validate({ body: AgentRegistration }), async (ctx) => {
    const { body } = ctx.state.valid as Valid<unknown, unknown, AgentRegistration>;
    const { agent, token } = await registerAgent(db, body);
    ctx.status = 201;
    ctx.body = { agent, token };
  });

  router.get('/', requireRole('admin'), async (ctx) => {
    ctx.body = { agents: await listAgents(db) };
  });

  router.get('/:id', requireRole('admin', 'agent'), validate({ params: z.object({ id: AgentId }) }), async (ctx) => {
    const { params } = ctx.state.valid as Valid<{ id: string }>;
    const principal = ctx.state.principal as Principal;
    if (principal.role === 'agent' && principal.agentId !== params.id)
      throw new ApiError('forbidden', 'an agent may only read itself');
    // An agent reading itself is its liveness signal.
    if (principal.role === 'agent') await touchAgent(db, params.id);
    const agent = await getAgent(db, params.id);
    if (!agent) throw notFound(`agent ${params.id}`);
    ctx.body = { agent };
  });

  return router;
}
