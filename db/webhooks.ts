import type { Db } from './index';

export interface WebhookSubscriptionRow {
  id: string;
  url: string;
  events: string[];
  secret: string;
  description: string | null;
  created_by: string;
  created_at: Date;
  deleted_at: Date | null;
  deleted_by: string | null;
}

export interface WebhookDeliveryRow {
  id: string;
  subscription_id: string;
  event_id: string;
  event: string;
  payload: string;
  status: 'pending' | 'delivered' | 'failed' | 'cancelled';
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  created_at: Date;
  updated_at: Date;
  delivered_at: Date | null;
}

export const subscriptions = (db: Db) => db<WebhookSubscriptionRow>('webhook_subscriptions');
export const deliveries = (db: Db) => db<WebhookDeliveryRow>('webhook_deliveries');

/** Live subscriptions to an event. */
export const subscribersOf = (db: Db, event: string) =>
  subscriptions(db).whereNull('deleted_at').whereRaw('? = any(events)', [event]);
