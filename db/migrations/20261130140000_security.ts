import type { Knex } from 'knex';

/**
 * Security classification and security-only runs (issue 16).
 *
 * - `run_packages.security`: whether the candidate is a security fix — true/false from the
 *   package manager's data, null when it has none (pacman) or the row predates this migration.
 * - `run_packages.advisories`: the advisories the manager names (`[{ id, severity }]`), null for
 *   rows recorded before this migration (read as "not recorded", never as "none").
 * - `patch_runs.security_only`: the run applies only the security subset of the plan
 *   (`--security-only`); false for every run before it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('run_packages', (t) => {
    t.boolean('security');
    t.jsonb('advisories');
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    t.boolean('security_only').notNullable().defaultTo(false);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('patch_runs', (t) => t.dropColumn('security_only'));
  await knex.schema.alterTable('run_packages', (t) => {
    t.dropColumn('advisories');
    t.dropColumn('security');
  });
}
