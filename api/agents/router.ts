import Router from '@koa/router';
import { requireRole, type AppState } from '../auth';
import { ApiError } from '../errors';
import { validate } from '../validate';
import { AgentParams, AgentRegistration } from './schema';
import type { AgentsService } from './service';

export function agentsRouter(agents: AgentsService): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/agents' });

  router.post('/', requireRole('admin', 'enrol'), validate({ body: AgentRegistration }), async (ctx) => {
    const { principal } = ctx.state;
    if (principal.role !== 'admin' && principal.role !== 'enrol') throw new Error('unreachable: role checked');
    ctx.status = 201;
    ctx.body = await agents.register(ctx.state.valid.body, principal);
  });

  router.get('/', requireRole('admin'), async (ctx) => {
    ctx.body = { agents: await agents.list() };
  });

  // A pending agent may read itself (and nothing else), so it can wait to be accepted.
  router.get('/:id', requireRole('admin', 'agent', 'pending-agent'), validate({ params: AgentParams }), async (ctx) => {
    const { id } = ctx.state.valid.params;
    const { principal } = ctx.state;
    if ((principal.role === 'agent' || principal.role === 'pending-agent') && principal.agentId !== id)
      throw new ApiError('forbidden', 'an agent may only read itself');
    ctx.body = { agent: await agents.get(id, { seen: principal.role !== 'admin' }) };
  });

  router.post('/:id/accept', requireRole('admin'), validate({ params: AgentParams }), async (ctx) => {
    ctx.body = { agent: await agents.accept(ctx.state.valid.params.id, ctx.state.principal.name) };
  });

  /** Revoke (the row stays, for the history of its runs). */
  router.delete('/:id', requireRole('admin'), validate({ params: AgentParams }), async (ctx) => {
    ctx.body = await agents.revoke(ctx.state.valid.params.id, ctx.state.principal.name);
  });

  return router;
}
