import type { Knex } from 'knex';

/**
 * Signed scripts (issue 10): each script row keeps the Ed25519 signatures of its `<name>.sig`
 * (`[{keyId, signature}]`), served with the content; agents verify them against their trusted
 * keys. Null: the script was loaded without a signature (agents with trusted keys refuse it).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('scripts', (t) => {
    t.jsonb('signatures');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('scripts', (t) => {
    t.dropColumn('signatures');
  });
}
