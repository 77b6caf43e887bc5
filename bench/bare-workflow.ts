/** Baseline workflows (bundled by bare-control.ts): what Temporal alone costs for a patch run's shape. */
import { condition, defineUpdate, proxyActivities, setHandler } from '@temporalio/workflow';
import type * as bare from './bare-activities';

export interface BareRunInput {
  hostQueue: string;
}

export const bareApprove = defineUpdate<void>('approve');

function activities(hostQueue: string) {
  const host = proxyActivities<typeof bare>({ taskQueue: hostQueue, startToCloseTimeout: '2m' });
  const control = proxyActivities<typeof bare>({ startToCloseTimeout: '2m' });
  return { host, control };
}

/** dry-run (host) → apply (host) → report (control): three activity round-trips. */
export async function bareRun(input: BareRunInput): Promise<void> {
  const { host, control } = activities(input.hostQueue);
  await host.dryRun();
  await host.apply();
  await control.report();
}

/** Same shape with a wait for an `approve` Update between dry-run and apply (scenario 3's baseline). */
export async function bareApprovalRun(input: BareRunInput): Promise<void> {
  const { host, control } = activities(input.hostQueue);
  let planned = false;
  let approved = false;
  setHandler(bareApprove, () => void (approved = true), {
    validator: () => {
      if (!planned || approved) throw new Error('not awaiting approval');
    },
  });
  await host.dryRun();
  planned = true;
  await condition(() => approved);
  await host.apply();
  await control.report();
}
