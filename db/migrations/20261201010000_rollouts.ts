import type { Knex } from 'knex';

/**
 * Rollouts (issue 12, docs/rollouts.md): one row per rollout with its policy and state, and one
 * row per resolved target host, written when the rollout starts, so what a rollout was meant to
 * touch is recorded whatever the labels say later. A target's run id and start time are set when
 * the rollout starts its run; its end and outcome are the run's own (patch_runs).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('rollouts', (t) => {
    t.text('id').primary(); // rol-<ulid>; also the rollout workflow's id
    t.text('name').notNullable().defaultTo('');
    /** The targets as requested: { agentIds?, selector? }. */
    t.jsonb('targets').notNullable();
    t.text('mode').notNullable();
    t.text('approval').notNullable();
    /** { count } | { percent } | null; resolved to canary_count at start. */
    t.jsonb('canary');
    t.integer('canary_count').notNullable().defaultTo(0);
    t.integer('max_concurrency').notNullable();
    /** { count } | { percent }; resolved to allowed_failures (percent of the targets, rounded down). */
    t.jsonb('max_failures').notNullable();
    t.integer('allowed_failures').notNullable();
    /** Recorded for each host's run once patchRun takes them (the reboot/hooks work of issue 12). */
    t.text('reboot');
    t.jsonb('hooks');
    /** Targets named but not run, with why (pending acceptance, revoked). */
    t.jsonb('skipped_targets').notNullable().defaultTo('[]');
    t.text('state').notNullable().defaultTo('running'); // running | paused | halted | aborted | completed
    t.integer('failures').notNullable().defaultTo(0);
    t.text('state_reason');
    /** The Temporal run id of the workflow that claimed this rollout: only it may write the rollout's runs. */
    t.text('workflow_run_id');
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
  });
  await knex.schema.createTable('rollout_targets', (t) => {
    t.text('rollout_id').notNullable().references('rollouts.id').onDelete('CASCADE');
    t.text('agent_id').notNullable();
    t.text('hostname').notNullable();
    /** Order within the rollout: the canary is the first canary_count. */
    t.integer('position').notNullable();
    /** 1 = canary (when there is one), then 2 = the rest; without a canary every host is wave 1. */
    t.integer('wave').notNullable();
    t.text('run_id');
    t.timestamp('started_at', { useTz: true });
    t.primary(['rollout_id', 'agent_id']);
  });
  await knex.raw('create index rollout_targets_run on rollout_targets (run_id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('rollout_targets');
  await knex.schema.dropTable('rollouts');
}
