export { patchRun } from './patch-run';
export { maintenanceWindow } from './maintenance-window';
export { hostLock } from './host-lock';
export { webhookDelivery } from './webhook-delivery';
export { rollout } from './rollout';
