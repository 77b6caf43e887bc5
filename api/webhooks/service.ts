import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { deliveries, subscriptions, type WebhookDeliveryRow, type WebhookSubscriptionRow } from '../../db/webhooks';
import { notFound } from '../errors';
import type { CreateWebhookBody } from './schema';
import { iso } from '../views';

/** A subscription as the API shows it: never its secret. */
const toWebhook = (r: WebhookSubscriptionRow) => ({
  id: r.id,
  url: r.url,
  events: r.events,
  description: r.description,
  createdBy: r.created_by,
  createdAt: r.created_at.toISOString(),
});

const toDelivery = (r: WebhookDeliveryRow) => ({
  id: r.id,
  event: r.event,
  eventId: r.event_id,
  status: r.status,
  attempts: r.attempts,
  lastStatus: r.last_status,
  lastError: r.last_error,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  deliveredAt: iso(r.delivered_at),
  payload: JSON.parse(r.payload) as unknown,
});

export function webhooksService({ db }: { db: Db }) {
  async function live(id: string): Promise<WebhookSubscriptionRow> {
    const row = await subscriptions(db).where({ id }).whereNull('deleted_at').first();
    if (!row) throw notFound(`webhook ${id}`);
    return row;
  }

  return {
    /** The secret is in this answer and nowhere else, ever. */
    async create(body: CreateWebhookBody, by: string) {
      const secret = `whsec_${randomBytes(32).toString('base64url')}`;
      const id = `whk-${ulid().toLowerCase()}`;
      const row = await db.transaction(async (trx) => {
        const [r] = await subscriptions(trx)
          .insert({
            id,
            url: body.url,
            events: body.events,
            secret,
            description: body.description ?? null,
            created_by: by,
          })
          .returning('*');
        await appendAudit(trx, {
          actor: by,
          kind: 'webhook.created',
          subject: id,
          detail: { url: body.url, events: body.events },
        });
        return r;
      });
      return { webhook: toWebhook(row), secret };
    },
    async list() {
      return (await subscriptions(db).whereNull('deleted_at').orderBy('created_at')).map(toWebhook);
    },
    /** Soft delete: deliveries still pending are cancelled (their workflows stop at their next attempt); the log stays. */
    async remove(id: string, by: string) {
      await live(id);
      await db.transaction(async (trx) => {
        await subscriptions(trx).where({ id }).update({ deleted_at: trx.fn.now(), deleted_by: by });
        await deliveries(trx)
          .where({ subscription_id: id, status: 'pending' })
          .update({ status: 'cancelled', last_error: 'subscription deleted', updated_at: trx.fn.now() });
        await appendAudit(trx, { actor: by, kind: 'webhook.deleted', subject: id, detail: {} });
      });
    },
    async deliveries(id: string, q: { status?: WebhookDeliveryRow['status']; limit: number }) {
      await live(id);
      const query = deliveries(db).where({ subscription_id: id });
      if (q.status) void query.andWhere({ status: q.status });
      const rows = await query.orderBy('created_at', 'desc').limit(q.limit);
      return rows.map(toDelivery);
    },
  };
}
export type WebhooksService = ReturnType<typeof webhooksService>;
