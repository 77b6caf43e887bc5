import type { Knex } from 'knex';

/**
 * The audit trail (issue 10): every state change appended as one row that carries the hash of
 * the row before it, so editing, deleting or reordering a row breaks the chain (db/audit.ts).
 *
 * `seq` is not a bigserial: a sequence value taken by a transaction that later rolls back leaves
 * a gap, which the verifier would report as a deleted row. Appends take a transaction-level
 * advisory lock and use max(seq) + 1 instead, so seq is gap-free by construction.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_log', (t) => {
    t.bigInteger('seq').primary();
    t.timestamp('at', { useTz: true }).notNullable();
    t.text('actor').notNullable(); // principal name, `system`, `window:<id>`, `workflow:<id>`
    t.text('kind').notNullable(); // e.g. run.requested, exception.created (docs/audit.md)
    t.text('subject').notNullable(); // the id of what changed
    t.jsonb('detail').notNullable();
    t.text('prev_hash').notNullable();
    t.text('hash').notNullable();
    /** Set by appends a retried activity repeats: the second append of one key is a no-op. */
    t.text('dedupe_key').unique();
    t.index(['kind', 'seq']);
    t.index(['subject', 'seq']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('audit_log');
}
