import type { Knex } from 'knex';

/**
 * Snapshot-before-apply and startIfStopped per window and per container, not only per run
 * (issue 11, docs/proxmox.md). Null everywhere means "says nothing": the next layer decides
 * (run > window > container default > off). Each run records the options in effect and where
 * each came from (`container_options`), and its claim checks the workflow input against it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('pve_containers', (t) => {
    t.boolean('default_start_if_stopped');
    t.text('default_snapshot');
  });
  await knex.schema.alterTable('maintenance_windows', (t) => {
    t.boolean('start_if_stopped');
    t.text('snapshot');
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    t.jsonb('container_options'); // {startIfStopped, snapshot, from: {startIfStopped, snapshot}}
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('patch_runs', (t) => {
    t.dropColumn('container_options');
  });
  await knex.schema.alterTable('maintenance_windows', (t) => {
    t.dropColumn('start_if_stopped');
    t.dropColumn('snapshot');
  });
  await knex.schema.alterTable('pve_containers', (t) => {
    t.dropColumn('default_start_if_stopped');
    t.dropColumn('default_snapshot');
  });
}
