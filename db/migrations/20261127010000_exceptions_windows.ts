import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('package_exceptions', (t) => {
    t.text('id').primary();
    t.text('agent_id').notNullable().references('agents.id').onDelete('CASCADE');
    /** Package name or simple `*` glob, legal for the agent's family. */
    t.text('package').notNullable();
    t.text('reason').notNullable();
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true });
    t.unique(['agent_id', 'package']);
  });

  await knex.schema.createTable('maintenance_windows', (t) => {
    t.text('id').primary(); // also names its Temporal Schedule: window.<id>
    t.text('name').notNullable();
    t.jsonb('targets').notNullable(); // { agentIds: [...] }
    t.jsonb('recurrence').notNullable(); // { cron } | { calendar } | { everySeconds }
    t.text('timezone').notNullable();
    t.integer('duration_seconds').notNullable();
    t.integer('cutoff_seconds').notNullable();
    t.text('approval').notNullable(); // auto | pre-approved | dry-run-only
    t.integer('lead_seconds').notNullable().defaultTo(0);
    t.timestamp('start_at', { useTz: true });
    t.timestamp('end_at', { useTz: true });
    t.boolean('paused').notNullable().defaultTo(false);
    t.text('note').notNullable().defaultTo('');
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.alterTable('patch_runs', (t) => {
    t.text('window_id').references('maintenance_windows.id').onDelete('SET NULL');
    t.timestamp('window_start', { useTz: true });
    t.boolean('overran').notNullable().defaultTo(false);
    t.index(['window_id', 'created_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('patch_runs', (t) => {
    t.dropColumn('window_id');
    t.dropColumn('window_start');
    t.dropColumn('overran');
  });
  await knex.schema.dropTableIfExists('maintenance_windows');
  await knex.schema.dropTableIfExists('package_exceptions');
}
