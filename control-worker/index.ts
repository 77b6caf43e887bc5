import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import type { Db } from '../db';
import { createControlActivities, type RunObserver } from '../activities/control';
import { createHostLockActivities } from '../activities/control/host-lock';
import { createRolloutActivities } from '../activities/control/rollouts';
import { createWindowFiringActivities } from '../activities/control/window-firing';
import {
  createWebhookActivities,
  createWindowEventActivities,
  startWebhookSweeper,
  sweepWebhooks,
  webhookEvents,
} from '../activities/control/webhooks';
import type { ConfigurableTimeouts } from '../contract';
import { connectWorker, workflowSource, type TemporalEnv } from '../runtime/temporal';

/**
 * The control worker: patch-run workflows plus the control activities (database writes, and the
 * host-lock request, which starts and signals workflows through `client`).
 */
export async function createControlWorker(
  env: TemporalEnv,
  db: Db,
  taskQueue: string,
  runDefaults: ConfigurableTimeouts,
  client: Client,
  observe?: RunObserver,
  /** Where a webhook that could not be emitted is reported (default: stderr). */
  warn: (message: string) => void = (m) => process.stderr.write(`${m}\n`),
  /** `window.upcoming` is sent this long before a window opens (docs/webhooks.md). */
  upcomingLeadSeconds = 24 * 3600,
): Promise<Worker> {
  const { connection, namespace } = await connectWorker(env);
  const worker = await Worker.create({
    connection,
    namespace,
    taskQueue,
    ...workflowSource(),
    activities: {
      ...createControlActivities(db, runDefaults, observe, webhookEvents(db, client, taskQueue, warn)),
      ...createWebhookActivities(db),
      ...createHostLockActivities(client, taskQueue),
      ...createWindowFiringActivities(client),
      ...createWindowEventActivities(db, client, taskQueue, warn),
      ...createRolloutActivities(db, runDefaults),
    },
  });
  // Pending deliveries whose workflow never started, and window heads-ups: once a minute while
  // the worker runs (a stopped worker's database may be closed already).
  startWebhookSweeper(
    () => sweepWebhooks(db, client, taskQueue, { upcomingLeadSeconds }),
    () => ['INITIALIZED', 'RUNNING'].includes(worker.getState()),
    warn,
  );
  return worker;
}
