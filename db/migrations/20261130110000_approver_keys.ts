import type { Knex } from 'knex';

/**
 * Signed approvals (issue 10): approvers' Ed25519 public keys, and the signed statement each
 * approved run was approved with (so the record names the person and carries their signature).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('approver_keys', (t) => {
    t.text('id').primary(); // key_<fingerprint> (contract/approval-key-id.ts)
    /** The principal's name the key signs for; no FK: principals are configured, not all rows. */
    t.text('owner').notNullable();
    t.text('public_key').notNullable().unique(); // 32 bytes, base64url
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('revoked_at', { useTz: true });
    t.text('revoked_by');
    t.index(['owner']);
  });
  await knex.schema.alterTable('patch_runs', (t) => {
    /** The SignedApproval the run was approved with (null for auto-approved and unapproved runs). */
    t.jsonb('approval_signature');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('patch_runs', (t) => t.dropColumn('approval_signature'));
  await knex.schema.dropTableIfExists('approver_keys');
}
