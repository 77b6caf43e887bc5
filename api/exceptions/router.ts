import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { AgentParams, CreateExceptionBody, ExceptionParams, ListExceptionsQuery, UpdateExceptionBody } from './schema';
import type { ExceptionsService } from './service';

export function exceptionsRouter(exceptions: ExceptionsService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(
    ...at('GET /v1/agents/:agentId/exceptions'),
    validate({ params: AgentParams, query: ListExceptionsQuery }),
    async (ctx) => {
      const { params, query } = ctx.state.valid;
      ctx.body = { exceptions: await exceptions.list(params.agentId, query.container) };
    },
  );

  router.post(
    ...at('POST /v1/agents/:agentId/exceptions'),
    validate({ params: AgentParams, body: CreateExceptionBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.status = 201;
      ctx.body = { exception: await exceptions.create(params.agentId, body, ctx.state.principal.name) };
    },
  );

  router.patch(
    ...at('PATCH /v1/agents/:agentId/exceptions/:id'),
    validate({ params: ExceptionParams, body: UpdateExceptionBody }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = { exception: await exceptions.update(params.agentId, params.id, body, ctx.state.principal.name) };
    },
  );

  router.delete(
    ...at('DELETE /v1/agents/:agentId/exceptions/:id'),
    validate({ params: ExceptionParams }),
    async (ctx) => {
      const { params } = ctx.state.valid;
      await exceptions.remove(params.agentId, params.id, ctx.state.principal.name);
      ctx.status = 204;
    },
  );

  return router;
}
