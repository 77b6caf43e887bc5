import type { Knex } from 'knex';

/**
 * People and roles (issue 10): named users with one role each and bearer tokens of their own
 * (stored as SHA-256, shown once), so the API knows who asked and what they may do. Four-eyes
 * is a per-window and per-agent switch, pinned on the run row at creation so a later change to
 * the window or agent does not alter a run already going.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.text('name').primary(); // a slug like `alice`: what runs record as requested_by / approved_by
    t.text('display_name');
    t.text('role').notNullable();
    t.text('created_by').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('disabled_at', { useTz: true });
  });
  await knex.raw(
    `alter table users add constraint users_role_check check (role in ('admin','approver','requester','viewer'))`,
  );
  await knex.schema.createTable('user_tokens', (t) => {
    t.text('id').primary(); // utk-<ulid>: names the token in lists and in DELETE
    t.text('user_name').notNullable().references('name').inTable('users');
    t.text('token_hash').notNullable().unique();
    t.text('note').notNullable().defaultTo('');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('revoked_at', { useTz: true });
    t.index(['user_name']);
  });
  for (const table of ['maintenance_windows', 'agents', 'patch_runs'])
    await knex.schema.alterTable(table, (t) => {
      t.boolean('four_eyes').notNullable().defaultTo(false);
    });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['maintenance_windows', 'agents', 'patch_runs'])
    await knex.schema.alterTable(table, (t) => t.dropColumn('four_eyes'));
  await knex.schema.dropTableIfExists('user_tokens');
  await knex.schema.dropTableIfExists('users');
}
