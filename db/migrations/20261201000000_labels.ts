import type { Knex } from 'knex';

/**
 * Agent labels (issue 12, contract/labels.ts): set from the agent's PATCHNANNY_LABELS at
 * enrolment, editable by admins; windows, rollouts and baselines select agents by them.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('agents', (t) => {
    t.jsonb('labels').notNullable().defaultTo('{}');
  });
  await knex.raw('create index agents_labels_gin on agents using gin (labels jsonb_path_ops)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop index if exists agents_labels_gin');
  await knex.schema.alterTable('agents', (t) => {
    t.dropColumn('labels');
  });
}
