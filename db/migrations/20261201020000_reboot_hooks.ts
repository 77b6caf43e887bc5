import type { Knex } from 'knex';

/**
 * Reboot policy and pre/post hooks (issue 12, docs/reboot-and-hooks.md).
 *
 * `hooks`: hook scripts an admin uploads by name, with their SHA-256 and signatures, served to
 * agents exactly like patch scripts. A table of their own, not a kind of `scripts`: the scripts
 * table is the shipped folder's mirror (every API start deletes the rows the folder lacks), and a
 * hook is not for a family.
 *
 * `patch_runs.reboot_policy` / `hooks` and the same on `maintenance_windows`: what a run was asked
 * to do besides plan → review → apply. The run's claim checks its input against its row, so a
 * workflow started around the API cannot add a reboot or a hook. `hooks` on a run holds the specs
 * as requested ({pre?, post?}); the pinned hashes are recorded as run events when resolved.
 * Null: no reboot ("never"), no hooks — every row from before.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('hooks', (t) => {
    t.text('name').primary();
    t.text('content').notNullable();
    t.text('sha256').notNullable();
    t.jsonb('signatures');
    t.text('updated_by').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  for (const table of ['patch_runs', 'maintenance_windows'])
    await knex.schema.alterTable(table, (t) => {
      t.text('reboot_policy');
      t.jsonb('hooks');
    });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['patch_runs', 'maintenance_windows'])
    await knex.schema.alterTable(table, (t) => {
      t.dropColumn('reboot_policy');
      t.dropColumn('hooks');
    });
  await knex.schema.dropTable('hooks');
}
