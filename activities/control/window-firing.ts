import { Context } from '@temporalio/activity';
import { ScheduleNotFoundError, type Client } from '@temporalio/client';
import { windowScheduleId } from '../../contract/run-id';

export type FiringCheck = { verified: true } | { verified: false; reason: string };

/** How long a firing waits for its Schedule to list it (the Schedule records a start once it returned). */
const LISTED_WITHIN_MS = 15_000;

/**
 * Control-side activity: was this maintenance-window execution started by its window's own
 * Schedule? Anyone with namespace access can start `maintenanceWindow` directly, and a direct
 * start has no scheduled time, so it would fire the window's runs (apply, auto-approved) at once,
 * outside the window's times. The Schedule's record of the executions it started is the proof;
 * the execution is taken from the activity Context, not from the input.
 */
export function createWindowFiringActivities(temporal: Client) {
  async function checkWindowFiring(input: { windowId: string }): Promise<FiringCheck> {
    const execution = Context.current().info.workflowExecution;
    if (!execution) return { verified: false, reason: 'not scheduled by a workflow' };
    const schedule = temporal.schedule.getHandle(windowScheduleId(input.windowId));
    const deadline = Date.now() + LISTED_WITHIN_MS;
    for (;;) {
      let listed: { workflowId: string; firstExecutionRunId: string }[];
      try {
        const { info } = await schedule.describe();
        listed = [...info.runningActions, ...info.recentActions.map((a) => a.action)].map((a) => a.workflow);
      } catch (err) {
        if (err instanceof ScheduleNotFoundError)
          return { verified: false, reason: `window ${input.windowId} has no Schedule` };
        throw err;
      }
      if (listed.some((w) => w.workflowId === execution.workflowId && w.firstExecutionRunId === execution.runId))
        return { verified: true };
      if (Date.now() > deadline)
        return {
          verified: false,
          reason: `execution ${execution.workflowId}/${execution.runId} was not started by Schedule ${windowScheduleId(input.windowId)}`,
        };
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return { checkWindowFiring };
}
