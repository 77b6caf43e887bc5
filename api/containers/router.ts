import Router from '@koa/router';
import type { AppState } from '../auth';
import { ApiError } from '../errors';
import { at } from '../roles';
import { validate } from '../validate';
import { ContainerDefaults, ContainerInventory, ContainerParams, NodeParams } from './schema';
import type { ContainersService } from './service';

export function containersRouter(containers: ContainersService): Router<AppState> {
  const router = new Router<AppState>();

  router.get(...at('GET /v1/agents/:id/containers'), validate({ params: NodeParams }), async (ctx) => {
    ctx.body = { containers: await containers.list(ctx.state.valid.params.id) };
  });

  // The node's agent reports its own inventory, and only its own.
  router.put(
    ...at('PUT /v1/agents/:id/containers'),
    validate({ params: NodeParams, body: ContainerInventory }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      const { principal } = ctx.state;
      if (principal.role !== 'agent' || principal.agentId !== params.id)
        throw new ApiError('forbidden', 'an agent may only report its own containers');
      ctx.body = { containers: await containers.report(params.id, body) };
    },
  );

  // An admin's defaults for a container's runs, used where neither the run nor its window says.
  router.put(
    ...at('PUT /v1/agents/:id/containers/:vmid/defaults'),
    validate({ params: ContainerParams, body: ContainerDefaults }),
    async (ctx) => {
      const { params, body } = ctx.state.valid;
      ctx.body = { container: await containers.setDefaults(params.id, params.vmid, body, ctx.state.principal.name) };
    },
  );

  return router;
}
