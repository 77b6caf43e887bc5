import { z } from 'zod';
import { freeText } from '../../contract';
import { WEBHOOK_EVENTS } from '../../contract/webhooks';

export const CreateWebhookBody = z
  .object({
    /** Where deliveries are POSTed: http or https. */
    // freeText first: the URL parser keeps a NUL or control character in a path, which would reach the database.
    url: freeText(2000).pipe(z.url({ protocol: /^https?$/, error: 'an http or https URL' })),
    /** The events this subscription receives (docs/webhooks.md). */
    events: z
      .array(z.enum(WEBHOOK_EVENTS))
      .min(1)
      .max(WEBHOOK_EVENTS.length)
      .refine((e) => new Set(e).size === e.length, 'each event once'),
    description: freeText(200).trim().optional(),
  })
  .strict();
export type CreateWebhookBody = z.infer<typeof CreateWebhookBody>;

export const WebhookParams = z.object({
  id: z.string().regex(/^whk-[0-9a-z]{26}$/, 'a webhook id like whk-<ulid>'),
});

export const ListDeliveriesQuery = z
  .object({
    status: z.enum(['pending', 'delivered', 'failed', 'cancelled']).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
  })
  .strict();
