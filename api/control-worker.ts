import { Worker } from '@temporalio/worker';
import type { Knex } from 'knex';
import { createControlActivities } from '../activities/control';
import type { TemporalEnv } from '../contract/temporal';
import { connectWorker, workflowSource } from './temporal';

/** The control worker: patch-run workflows plus the control activities (database writes). */
export async function createControlWorker(env: TemporalEnv, db: Knex, taskQueue: string): Promise<Worker> {
  const { connection, namespace } = await connectWorker(env);
  return Worker.create({
    connection,
    namespace,
    taskQueue,
    ...workflowSource(),
    activities: createControlActivities(db),
  });
}
