import type { Knex } from 'knex';

/**
 * Signed webhooks (issue 18): admins' subscriptions per event, and the log of every delivery
 * (its status, attempts and last error). A subscription is soft-deleted so its log stays.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webhook_subscriptions', (t) => {
    t.text('id').primary(); // whk-<ulid>
    t.text('url').notNullable();
    t.specificType('events', 'text[]').notNullable();
    /** The HMAC-SHA256 key; shown once, at creation, never again. */
    t.text('secret').notNullable();
    t.text('description');
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('deleted_at', { useTz: true });
    t.text('deleted_by');
  });
  await knex.schema.createTable('webhook_deliveries', (t) => {
    t.text('id').primary(); // whd-<hash of subscription and event>: the same event is delivered once
    t.text('subscription_id').notNullable().references('id').inTable('webhook_subscriptions');
    t.text('event_id').notNullable();
    t.text('event').notNullable();
    /** The exact JSON bytes sent (and signed) on every attempt. */
    t.text('payload').notNullable();
    t.text('status').notNullable().defaultTo('pending'); // pending | delivered | failed | cancelled
    t.integer('attempts').notNullable().defaultTo(0);
    t.integer('last_status');
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('delivered_at', { useTz: true });
    t.unique(['subscription_id', 'event_id']);
    t.index(['subscription_id', 'created_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('webhook_deliveries');
  await knex.schema.dropTableIfExists('webhook_subscriptions');
}
