import type { Knex } from 'knex';

/**
 * Proxmox VE containers as targets (issue 11, docs/proxmox.md): the inventory each node's agent
 * reports, runs that target a container of their agent's node, and exceptions per container.
 * `container` 0 in package_exceptions is the node itself (VMIDs start at 100), so one unique key
 * keeps a container's exceptions apart from the node's and its siblings'.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('pve_containers', (t) => {
    t.text('agent_id').notNullable().references('id').inTable('agents').onDelete('CASCADE');
    t.integer('vmid').notNullable();
    t.text('name').notNullable();
    t.text('status').notNullable();
    t.text('lock');
    t.jsonb('os');
    t.text('family');
    t.text('unsupported');
    t.timestamp('reported_at', { useTz: true }).notNullable();
    t.timestamp('gone_at', { useTz: true });
    t.primary(['agent_id', 'vmid']);
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    t.integer('container'); // null: the agent's host itself
    t.jsonb('container_report'); // what the node did around the last script (snapshot, start/stop)
    t.index(['agent_id', 'container']);
  });
  await knex.schema.alterTable('package_exceptions', (t) => {
    t.integer('container').notNullable().defaultTo(0);
    t.dropUnique(['agent_id', 'package']);
    t.unique(['agent_id', 'container', 'package']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex('package_exceptions').where('container', '<>', 0).delete();
  await knex.schema.alterTable('package_exceptions', (t) => {
    t.dropUnique(['agent_id', 'container', 'package']);
    t.dropColumn('container');
    t.unique(['agent_id', 'package']);
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    t.dropIndex(['agent_id', 'container']);
    t.dropColumn('container');
    t.dropColumn('container_report');
  });
  await knex.schema.dropTableIfExists('pve_containers');
}
