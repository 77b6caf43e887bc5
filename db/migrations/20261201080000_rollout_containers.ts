import type { Knex } from 'knex';

/**
 * Proxmox VE containers as rollout targets (issue 12, docs/rollouts.md "Targets"): a target is a
 * host (`vmid` 0) or one container of a node (`vmid` its id), so a node and its containers are
 * targets of their own. The options each container run gets (startIfStopped, snapshot and where
 * each came from) are resolved at start and recorded with the target; `start_if_stopped` and
 * `snapshot` keep what the rollout itself asked (null: each container's default decides).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('rollout_targets', (t) => {
    t.integer('vmid').notNullable().defaultTo(0);
    t.jsonb('container_options');
  });
  await knex.raw('alter table rollout_targets drop constraint rollout_targets_pkey');
  await knex.raw('alter table rollout_targets add primary key (rollout_id, agent_id, vmid)');
  await knex.schema.alterTable('rollouts', (t) => {
    t.boolean('start_if_stopped');
    t.text('snapshot');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('rollouts', (t) => {
    t.dropColumn('start_if_stopped');
    t.dropColumn('snapshot');
  });
  await knex.raw('delete from rollout_targets where vmid <> 0');
  await knex.raw('alter table rollout_targets drop constraint rollout_targets_pkey');
  await knex.raw('alter table rollout_targets add primary key (rollout_id, agent_id)');
  await knex.schema.alterTable('rollout_targets', (t) => {
    t.dropColumn('container_options');
    t.dropColumn('vmid');
  });
}
