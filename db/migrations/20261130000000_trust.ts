import type { Knex } from 'knex';

/**
 * Per-host trust (issue 13): agents are pending until an admin accepts them and can be revoked;
 * enrolment tokens expire and are limited in uses; a run row is claimed by exactly one workflow
 * execution, so a workflow started around the API can never write another run's row.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('enrolment_tokens', (t) => {
    t.text('id').primary(); // enr_<ulid>: names the token in lists and in the agents it enrolled
    t.text('token_hash').notNullable().unique(); // SHA-256; the token is shown once
    t.text('note').notNullable().defaultTo('');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.integer('max_uses'); // null: any number of registrations until it expires
    t.integer('uses').notNullable().defaultTo(0);
    /** Agents registered with it are accepted at once (an admin vouched for the hosts in advance). */
    t.boolean('pre_accepted').notNullable().defaultTo(false);
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('revoked_at', { useTz: true });
  });

  await knex.schema.alterTable('agents', (t) => {
    // Agents registered before this migration were trusted already.
    t.text('status').notNullable().defaultTo('accepted'); // pending | accepted | revoked
    t.text('flag'); // why an admin must look before accepting, e.g. a host name another accepted agent has
    t.text('enrolment_token_id');
    t.text('accepted_by');
    t.timestamp('accepted_at', { useTz: true });
    t.text('revoked_by');
    t.timestamp('revoked_at', { useTz: true });
    t.index(['hostname']);
  });
  await knex.raw(
    `alter table agents add constraint agents_status_check check (status in ('pending','accepted','revoked'))`,
  );

  await knex.schema.alterTable('patch_runs', (t) => {
    /** The Temporal run id of the workflow execution that claimed this row; set once. */
    t.text('workflow_run_id');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('patch_runs', (t) => t.dropColumn('workflow_run_id'));
  await knex.raw('alter table agents drop constraint agents_status_check');
  await knex.schema.alterTable('agents', (t) => {
    t.dropIndex(['hostname']);
    for (const c of ['status', 'flag', 'enrolment_token_id', 'accepted_by', 'accepted_at', 'revoked_by', 'revoked_at'])
      t.dropColumn(c);
  });
  await knex.schema.dropTableIfExists('enrolment_tokens');
}
