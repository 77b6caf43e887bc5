import type { Knex } from 'knex';

/**
 * Patch baselines and what they need (issue 12, docs/labels-and-baselines.md).
 *
 * - `patch_baselines`: an admin's standing approval for the agents a label selector matches.
 * - `package_first_seen`: when patchnanny first saw a candidate version of a package for an OS and
 *   family (`scope`, e.g. `debian/apt`), filled when plans are recorded. Scripts do not report
 *   publication dates, so a baseline's "security fixes after N days" counts from here.
 * - `patch_runs.approved_by_baseline`: which baseline approved the run and the rule that covered
 *   each package (null when a person approved it, or nobody did).
 * - `window_firings`: each firing's target set as resolved when it fired (explicit ids and the
 *   window's selector), so an admin can see which hosts a selector meant at that moment.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('patch_baselines', (t) => {
    t.text('id').primary();
    t.text('name').notNullable().unique();
    t.text('selector').notNullable();
    t.jsonb('rules').notNullable();
    t.boolean('enabled').notNullable().defaultTo(true);
    t.text('note').notNullable().defaultTo('');
    t.text('created_by').notNullable();
    t.text('updated_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.createTable('package_first_seen', (t) => {
    t.text('scope').notNullable();
    t.text('name').notNullable();
    t.text('arch').notNullable();
    t.text('candidate').notNullable();
    t.timestamp('first_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['scope', 'name', 'arch', 'candidate']);
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    t.jsonb('approved_by_baseline');
  });
  await knex.schema.createTable('window_firings', (t) => {
    t.text('workflow_run_id').primary();
    t.text('workflow_id').notNullable();
    t.text('window_id').notNullable().index();
    t.text('selector');
    t.jsonb('agent_ids').notNullable();
    t.jsonb('skipped_targets').notNullable();
    t.timestamp('resolved_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('window_firings');
  await knex.schema.alterTable('patch_runs', (t) => t.dropColumn('approved_by_baseline'));
  await knex.schema.dropTable('package_first_seen');
  await knex.schema.dropTable('patch_baselines');
}
