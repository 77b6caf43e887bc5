import type { Knex } from 'knex';

/**
 * Live output, out of Temporal history (issue 17, docs/review-desk.md "Live output"): the agent
 * posts a script's output in chunks while it runs, keyed by run, step, activity attempt, stream
 * and sequence number (a repeated POST of a chunk is a no-op, a different one under the same key
 * is refused). The result that comes back through Temporal carries only each stream's size and
 * SHA-256 and the attempt; `run_output` keeps them so the API can show whether the stored chunks
 * are what the agent hashed.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('run_output_chunks', (t) => {
    t.bigIncrements('id'); // arrival order: the cursor followers read after
    t.text('run_id').notNullable().references('patch_runs.id').onDelete('CASCADE');
    t.text('step').notNullable(); // plan | replan | apply
    t.integer('attempt').notNullable();
    t.text('stream').notNullable(); // stdout | stderr
    t.integer('seq').notNullable();
    t.binary('data').notNullable();
    /** Bytes dropped from the stream's middle just before this chunk (the per-step cap). */
    t.bigInteger('gap_before').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['run_id', 'step', 'attempt', 'stream', 'seq']);
    t.index(['run_id', 'id']);
  });
  await knex.schema.alterTable('run_output', (t) => {
    // Null on rows recorded before issue 17 (their text is in stdout/stderr).
    t.integer('attempt');
    t.jsonb('digests'); // { stdout: StreamDigest, stderr: StreamDigest }
    t.boolean('delivered');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('run_output', (t) => {
    t.dropColumn('attempt');
    t.dropColumn('digests');
    t.dropColumn('delivered');
  });
  await knex.schema.dropTableIfExists('run_output_chunks');
}
