import { migrate } from '../../db';
import { createScratchDatabase, type ScratchDatabase } from '../../scripts/dev/scratch-db';

/** Server the tests use: the machine's PostgreSQL (PATCHNANNY_TEST_PG overrides). */
const SERVER = process.env.PATCHNANNY_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export type TestDatabase = ScratchDatabase;

/** A fresh, migrated database of its own for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const database = await createScratchDatabase(SERVER, 'pn_test', 8);
  await migrate(database.db);
  return database;
}

/** Every table the API or the control worker writes, for "nothing was written" checks. */
export const TABLES = [
  'agents',
  'scripts',
  'hooks',
  'patch_runs',
  'run_packages',
  'run_output',
  'run_output_chunks',
  'run_events',
  'package_exceptions',
  'maintenance_windows',
  'rollouts',
  'rollout_targets',
  'rollout_plan_approvals',
  'enrolment_tokens',
  'users',
  'user_tokens',
  'approver_keys',
  'webhook_subscriptions',
  'webhook_deliveries',
  'patch_baselines',
  'package_first_seen',
  'window_firings',
];
