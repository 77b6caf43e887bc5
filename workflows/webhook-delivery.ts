import { ActivityFailure, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { WebhookActivities } from '../activities/control/webhooks';
import { DELIVERY_ID_PATTERN } from '../contract/workflow-safe';

/**
 * Delivery attempts back off 2 s, 4 s, 8 s … up to 10 min between them, 12 attempts in all
 * (about an hour): a receiver down for a deploy gets its events afterwards.
 */
const { deliverWebhook } = proxyActivities<WebhookActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '10m', maximumAttempts: 12 },
});
const { webhookGaveUp } = proxyActivities<WebhookActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

/** One webhook delivery (docs/webhooks.md), a workflow of its own so no run waits on a receiver. */
export async function webhookDelivery(input: {
  deliveryId: string;
}): Promise<'delivered' | 'failed' | 'untrusted-input'> {
  // Started by hand (the Temporal CLI) with an id no delivery can have: nothing to read or send,
  // and retrying a database read with it (a NUL byte is refused by PostgreSQL) would never succeed.
  if (typeof input?.deliveryId !== 'string' || !DELIVERY_ID_PATTERN.test(input.deliveryId)) return 'untrusted-input';
  try {
    await deliverWebhook(input);
    return 'delivered';
  } catch (err) {
    if (isCancellation(err) || !(err instanceof ActivityFailure)) throw err;
    await webhookGaveUp(input);
    return 'failed';
  }
}
