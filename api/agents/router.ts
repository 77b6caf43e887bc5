import Router from '@koa/router';
import { requireRole, type AppState } from '../auth';
import { ApiError } from '../errors';
import { validate } from '../validate';
import { AgentParams, AgentRegistration } from './schema';
import type { AgentsService } from './service';

export function agentsRouter(agents: AgentsService): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/agents' });

  router.post('/', requireRole('admin', 'enrol'), validate({ body: AgentRegistration }), async (ctx) => {
    ctx.status = 201;
    ctx.body = await agents.register(ctx.state.valid.body);
  });

  router.get('/', requireRole('admin'), async (ctx) => {
    ctx.body = { agents: await agents.list() };
  });

  router.get('/:id', requireRole('admin', 'agent'), validate({ params: AgentParams }), async (ctx) => {
    const { id } = ctx.state.valid.params;
    const { principal } = ctx.state;
    if (principal.role === 'agent' && principal.agentId !== id)
      throw new ApiError('forbidden', 'an agent may only read itself');
    ctx.body = { agent: await agents.get(id, { seen: principal.role === 'agent' }) };
  });

  return router;
}
