import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('agents', (t) => {
    t.text('id').primary();
    t.text('hostname').notNullable();
    t.text('os_id').notNullable();
    t.text('os_version').notNullable().defaultTo('');
    t.text('os_pretty_name').notNullable().defaultTo('');
    t.text('family').notNullable();
    t.text('package_manager').notNullable();
    t.text('token_hash').notNullable().unique();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_seen_at', { useTz: true });
  });

  await knex.schema.createTable('scripts', (t) => {
    t.text('name').primary();
    t.text('family').notNullable();
    t.text('content').notNullable();
    t.string('sha256', 64).notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('patch_runs', (t) => {
    t.text('id').primary(); // the Temporal workflow id
    t.text('agent_id').notNullable().references('agents.id');
    t.text('mode').notNullable();
    t.text('approval').notNullable();
    t.text('phase').notNullable();
    t.text('outcome');
    t.text('failure_reason');
    t.text('requested_by').notNullable();
    t.text('script_name');
    t.string('script_sha256', 64);
    t.jsonb('exclusions').notNullable().defaultTo('[]');
    t.string('plan_hash', 64);
    t.text('approved_by');
    t.timestamp('approved_at', { useTz: true });
    t.text('rejected_by');
    t.text('reject_reason');
    t.integer('exit_code');
    t.boolean('reboot_required');
    t.text('reboot_reason');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
    t.index(['agent_id', 'created_at']);
    t.index(['phase']);
    t.index(['outcome']);
  });

  await knex.schema.createTable('run_packages', (t) => {
    t.bigIncrements('id');
    t.text('run_id').notNullable().references('patch_runs.id').onDelete('CASCADE');
    /** planned (the plan), held (excluded with an update), changed (what apply changed) */
    t.text('kind').notNullable();
    t.text('name').notNullable();
    t.text('arch').notNullable();
    t.text('current');
    t.text('candidate');
    t.text('repo').notNullable().defaultTo('');
    t.text('action').notNullable();
    t.index(['run_id', 'kind']);
  });

  await knex.schema.createTable('run_output', (t) => {
    t.bigIncrements('id');
    t.text('run_id').notNullable().references('patch_runs.id').onDelete('CASCADE');
    t.text('step').notNullable(); // plan | replan | apply
    t.jsonb('argv').notNullable();
    t.integer('exit_code').notNullable();
    t.text('stdout').notNullable();
    t.text('stderr').notNullable();
    t.integer('duration_ms').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['run_id']);
  });

  await knex.schema.createTable('run_events', (t) => {
    t.bigIncrements('id');
    t.text('run_id').notNullable().references('patch_runs.id').onDelete('CASCADE');
    t.text('kind').notNullable();
    t.jsonb('detail').notNullable();
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['run_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['run_events', 'run_output', 'run_packages', 'patch_runs', 'scripts', 'agents']) {
    await knex.schema.dropTableIfExists(table);
  }
}
