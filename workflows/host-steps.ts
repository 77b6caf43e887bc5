/**
 * Issue 12: the agent activities a run calls besides its patch script — hooks and the reboot —
 * with their timeouts and retry policies in one place (docs/reboot-and-hooks.md).
 */
import { proxyActivities } from '@temporalio/workflow';
import type { AgentActivities } from '../activities/agent';
import type { PatchRunInput } from '../contract';
import { agentTaskQueue } from '../contract/run-id';
import { hashVerifyOn } from './activities';

/** DEFAULT_REBOOT_TIMEOUT_SECONDS (contract/rollout-policy.ts, which the bundle does not import: zod). */
const DEFAULT_REBOOT_MS = 900_000;

export function hostSteps(input: PatchRunInput) {
  const { timeouts } = input;
  const taskQueue = agentTaskQueue(input.agentId);
  const onHost = { taskQueue, scheduleToStartTimeout: timeouts.agentPickupMs };
  const verify = hashVerifyOn(onHost);
  /** A hook may drain a load balancer: it runs once, never retried by Temporal. */
  const hookExecute = (timeoutSeconds: number) =>
    proxyActivities<AgentActivities>({
      ...onHost,
      startToCloseTimeout: timeoutSeconds * 1000 + 30_000,
      heartbeatTimeout: timeouts.heartbeatMs * 3,
      retry: { maximumAttempts: 1 },
    }).hookExecute;
  /** Exactly one attempt: a retried reboot could reboot twice (the agent also refuses a second for the run). */
  const reboot = proxyActivities<AgentActivities>({
    ...onHost,
    startToCloseTimeout: '10m', // waits for any script still running on the host first
    heartbeatTimeout: '30s',
    retry: { maximumAttempts: 1 },
  }).reboot;
  /**
   * The boot id, asked until `leftMs` has passed: an agent that is down (the host rebooting) leaves
   * the task in its queue until it is back, and one that died mid-answer is asked again.
   */
  const bootId = (leftMs: number) =>
    proxyActivities<AgentActivities>({
      taskQueue,
      scheduleToStartTimeout: leftMs,
      scheduleToCloseTimeout: leftMs,
      startToCloseTimeout: '30s',
      retry: { initialInterval: '1s', maximumInterval: '10s', nonRetryableErrorTypes: ['boot-id-unreadable'] },
    }).bootId();
  return { verify, hookExecute, reboot, bootId, rebootMs: timeouts.rebootMs ?? DEFAULT_REBOOT_MS };
}
