import type { Client } from '@temporalio/client';
import { hostLockId } from '../../contract/run-id';
import { hostLock } from '../../workflows/host-lock';
import { acquireSignal } from '../../workflows/messages';

/**
 * Control-side activity that asks for a host on a run's behalf. A workflow cannot
 * signal-with-start another workflow, so this does it through the client: the host's lock
 * workflow is started if it is not running, and the request is queued there.
 */
export function createHostLockActivities(temporal: Client, controlQueue: string) {
  async function requestHostLock(input: { agentId: string; runId: string; leaseMs: number }): Promise<void> {
    await temporal.workflow.signalWithStart(hostLock, {
      workflowId: hostLockId(input.agentId),
      taskQueue: controlQueue,
      args: [{ agentId: input.agentId }],
      signal: acquireSignal,
      signalArgs: [{ runId: input.runId, leaseMs: input.leaseMs }],
    });
  }
  return { requestHostLock };
}
