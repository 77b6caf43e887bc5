import type { Knex } from 'knex';

/**
 * Windows that target a label selector and start rollouts (issue 12, docs/windows.md, docs/rollouts.md).
 *
 * - `maintenance_windows.rollout`: `{ canary?, maxConcurrency, maxFailures }` when each firing
 *   starts a rollout instead of every host at once; null: the hosts all start at the firing.
 * - `maintenance_windows.reboot_timeout_seconds`, `rollouts.reboot_timeout_seconds`: how long a
 *   rebooted host has to come back (null: DEFAULT_REBOOT_TIMEOUT_SECONDS).
 * - `rollouts.window`: `{ windowId, startsAt, applyBy, endsAt }` (epoch ms) of the window firing
 *   that started the rollout: its runs are bound to it and no host starts after applyBy.
 * - `window_firings.rollout_id`: the rollout a firing started, so a retried firing finds it again.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('maintenance_windows', (t) => {
    t.jsonb('rollout');
    t.integer('reboot_timeout_seconds');
  });
  await knex.schema.alterTable('rollouts', (t) => {
    t.jsonb('window');
    t.integer('reboot_timeout_seconds');
  });
  await knex.schema.alterTable('window_firings', (t) => {
    t.text('rollout_id');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('window_firings', (t) => t.dropColumn('rollout_id'));
  await knex.schema.alterTable('rollouts', (t) => {
    t.dropColumn('reboot_timeout_seconds');
    t.dropColumn('window');
  });
  await knex.schema.alterTable('maintenance_windows', (t) => {
    t.dropColumn('reboot_timeout_seconds');
    t.dropColumn('rollout');
  });
}
