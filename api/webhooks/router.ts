import Router from '@koa/router';
import type { AppState } from '../auth';
import { at } from '../roles';
import { validate } from '../validate';
import { CreateWebhookBody, ListDeliveriesQuery, WebhookParams } from './schema';
import type { WebhooksService } from './service';

/** Signed webhooks (issue 18, docs/webhooks.md): subscriptions and their delivery log. */
export function webhooksRouter(webhooks: WebhooksService): Router<AppState> {
  const router = new Router<AppState>();

  router.post(...at('POST /v1/webhooks'), validate({ body: CreateWebhookBody }), async (ctx) => {
    ctx.status = 201;
    ctx.body = await webhooks.create(ctx.state.valid.body, ctx.state.principal.name);
  });

  router.get(...at('GET /v1/webhooks'), async (ctx) => {
    ctx.body = { webhooks: await webhooks.list() };
  });

  router.delete(...at('DELETE /v1/webhooks/:id'), validate({ params: WebhookParams }), async (ctx) => {
    await webhooks.remove(ctx.state.valid.params.id, ctx.state.principal.name);
    ctx.status = 204;
  });

  router.get(
    ...at('GET /v1/webhooks/:id/deliveries'),
    validate({ params: WebhookParams, query: ListDeliveriesQuery }),
    async (ctx) => {
      const { params, query } = ctx.state.valid;
      ctx.body = { deliveries: await webhooks.deliveries(params.id, query) };
    },
  );

  return router;
}
