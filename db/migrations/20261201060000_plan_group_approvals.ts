import type { Knex } from 'knex';

/**
 * Plan-group approvals of rollouts (issue 12, docs/rollouts.md "Approval scope").
 *
 * - `rollouts.approval_scope`: `per-run` (each host's plan is approved on its own, as before) or
 *   `plan-group` (one signed approval of a plan hash covers every host of the rollout whose plan
 *   has exactly that hash; drift at apply still refuses a host).
 * - `rollout_plan_approvals`: the signed statement for each approved plan hash of a rollout, as
 *   its approver signed it (`runId` holds the rollout id). The newest approval of a hash replaces
 *   the older one (a re-approval after the 24 h an approval stays fresh); the audit trail keeps all.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('rollouts', (t) => {
    t.text('approval_scope').notNullable().defaultTo('per-run');
  });
  await knex.schema.createTable('rollout_plan_approvals', (t) => {
    t.text('rollout_id').notNullable().references('rollouts.id').onDelete('CASCADE');
    t.text('plan_hash').notNullable();
    /** The SignedApproval exactly as signed: { runId: <rollout id>, planHash, by, at, keyId, signature }. */
    t.jsonb('approval').notNullable();
    t.text('approved_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['rollout_id', 'plan_hash']);
  });
  // A rollout's runs are found by their requester (`rollout:<id>`): to deliver a group approval.
  await knex.raw('create index patch_runs_requested_by on patch_runs (requested_by)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop index patch_runs_requested_by');
  await knex.schema.dropTable('rollout_plan_approvals');
  await knex.schema.alterTable('rollouts', (t) => t.dropColumn('approval_scope'));
}
