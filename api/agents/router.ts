import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { ApiError } from '../errors';
import { validate } from '../validate';
import { AgentLabelsBody, AgentListQuery, AgentParams, AgentRegistration, UpdateAgentBody } from './schema';
import type { AgentsService } from './service';
import type { ComplianceService } from '../compliance/service';

export function agentsRouter(agents: AgentsService, compliance: ComplianceService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/agents'), validate({ body: AgentRegistration }), async (ctx) => {
    const { principal } = ctx.state;
    const by =
      principal.role === 'enrol'
        ? principal
        : principal.role === 'admin'
          ? { role: 'admin' as const, name: principal.name }
          : undefined;
    if (!by) throw new Error('unreachable: role checked');
    ctx.status = 201;
    ctx.body = await agents.register(ctx.state.valid.body, by);
  });

  // Each agent with its compliance (issue 17): last apply, pending upgrades, reboot, last outcome.
  router.get(...at('GET /v1/agents'), validate({ query: AgentListQuery }), async (ctx) => {
    const { staleAfterSeconds, selector } = ctx.state.valid.query;
    ctx.body = { agents: await agents.listWithCompliance(compliance, staleAfterSeconds, selector) };
  });

  // A pending agent may read itself (and nothing else), so it can wait to be accepted.
  router.get(...at('GET /v1/agents/:id'), validate({ params: AgentParams }), async (ctx) => {
    const { id } = ctx.state.valid.params;
    const { principal } = ctx.state;
    if ((principal.role === 'agent' || principal.role === 'pending-agent') && principal.agentId !== id)
      throw new ApiError('forbidden', 'an agent may only read itself');
    ctx.body = {
      agent: await agents.get(id, { seen: principal.role === 'agent' || principal.role === 'pending-agent' }),
    };
  });

  router.patch(...at('PATCH /v1/agents/:id'), validate({ params: AgentParams, body: UpdateAgentBody }), async (ctx) => {
    const { params, body } = ctx.state.valid;
    ctx.body = { agent: await agents.update(params.id, body) };
  });

  // Issue 12: admins own an agent's labels once it is registered (audited, before and after).
  router.put(
    ...at('PUT /v1/agents/:id/labels'),
    validate({ params: AgentParams, body: AgentLabelsBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = { agent: await agents.setLabels(params.id, body.labels, ctx.state.principal.name) };
    },
  );

  router.post(...at('POST /v1/agents/:id/accept'), validate({ params: AgentParams }), async (ctx) => {
    ctx.body = { agent: await agents.accept(ctx.state.valid.params.id, ctx.state.principal.name) };
  });

  /** Revoke (the row stays, for the history of its runs). */
  router.delete(...at('DELETE /v1/agents/:id'), validate({ params: AgentParams }), async (ctx) => {
    ctx.body = await agents.revoke(ctx.state.valid.params.id, ctx.state.principal.name);
  });

  return router;
}
