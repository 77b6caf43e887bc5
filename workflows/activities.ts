/**
 * The activities a patch run calls, typed from their implementations (a changed activity
 * signature fails `tsc` here), with their timeouts and retry policies in one place.
 */
import {
  ActivityFailure,
  ApplicationFailure,
  proxyActivities,
  proxyLocalActivities,
  sleep,
} from '@temporalio/workflow';
import type { AgentActivities } from '../activities/agent';
import type { ControlActivities } from '../activities/control';
import type { OutputStepName, PatchRunInput, RunMode, ScriptExecution } from '../contract';
import { agentTaskQueue } from '../contract/run-id';

/**
 * Short control-side database writes are local activities in the control worker: no round trip
 * through a task queue, no extra workflow task, no script output copied into history
 * (measured: 8 → 4 workflow tasks a run; docs/benchmark.md). They retry without a limit: a run
 * waits out a database outage of any length rather than fail with its record half-written
 * (errors that can never succeed are non-retryable ApplicationFailures, e.g. unknown-agent).
 */
export const control = proxyLocalActivities<ControlActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumInterval: '30s' },
});

/**
 * The control writes a run makes because a signal arrived (refused approve/reject signals, its
 * place in its host's queue, asking for its host, whose answer is a signal) are regular
 * activities on the control task queue instead: measured here, a burst of 1,000 signals against
 * local-activity flushes left a run whose replay failed with "Missing associated machine for
 * LocalActivity" — local-activity markers and signals that arrive while they run do not replay
 * reliably. A regular activity is an event of its own in the history. The plan-group lookup is one
 * too: it runs while the run awaits approval, when approve Updates may arrive.
 */
export const controlBySignal = proxyActivities<
  Pick<ControlActivities, 'recordIgnoredDecisions' | 'recordPhase' | 'requestHostLock' | 'planGroupApproval'>
>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '200ms', maximumInterval: '30s' },
});

/** The script a run executes on its host, pinned by name and SHA-256. */
export interface PinnedScript {
  scriptName: string;
  sha256: string;
}

/**
 * The agent's hashVerify (patch scripts and hooks alike). Fetching and hashing a script of a few KB
 * takes milliseconds; the timeout is what a run waits when the answer was lost (an agent or a
 * Temporal server killed mid-activity) before the retry: 30 s, not the 2 min it was.
 */
export function hashVerifyOn(onHost: { taskQueue: string; scheduleToStartTimeout: number }) {
  return proxyActivities<AgentActivities>({
    ...onHost,
    startToCloseTimeout: '30s',
    retry: {
      initialInterval: '1s',
      maximumInterval: '30s',
      maximumAttempts: 5,
      nonRetryableErrorTypes: ['script-hash-mismatch'],
    },
  }).hashVerify;
}

/** The host's agent, on its own task queue, for one run. */
export function agentFor(input: PatchRunInput, exclusions: () => string[]) {
  const { timeouts } = input;
  const onHost = {
    taskQueue: agentTaskQueue(input.agentId),
    // An agent that never picks the task up ends the run as agent-unreachable; the timeout is not retried.
    scheduleToStartTimeout: timeouts.agentPickupMs,
  };
  const verify = hashVerifyOn(onHost);
  const script = { ...onHost, startToCloseTimeout: timeouts.scriptMs, heartbeatTimeout: timeouts.heartbeatMs * 3 };
  const execute: Record<RunMode, AgentActivities['scriptExecute']> = {
    // A dry-run changes nothing, so a held package-manager lock, an unreachable mirror or a lost
    // agent is retried with backoff.
    'dry-run': proxyActivities<AgentActivities>({
      ...script,
      retry: {
        initialInterval: '10s',
        maximumInterval: '2m',
        maximumAttempts: 6,
        nonRetryableErrorTypes: ['script-hash-mismatch', 'script-missing', ...CONTAINER_STATES],
      },
    }).scriptExecute,
    // An apply is never retried by Temporal: after an agent died mid-transaction, a second apply
    // would install whatever the mirror offers then, not the plan an admin approved. The run
    // fails and a new run re-plans.
    apply: proxyActivities<AgentActivities>({ ...script, retry: { maximumAttempts: 1 } }).scriptExecute,
  };

  /**
   * Run the script in a mode on the host. hash-verify runs once a run (script-execute re-checks
   * the stored file's hash before every execution anyway), and again only if the agent lost the
   * file since.
   */
  let verified = false;
  const verifyPinned = (p: PinnedScript) => verify({ scriptName: p.scriptName, sha256: p.sha256 });
  const { container } = input;
  /**
   * `step` names where the agent stores the output it streams (issue 17). Activity inputs are not
   * part of what a replay compares, so histories from before it replay unchanged.
   */
  return async function run(
    pinned: PinnedScript,
    mode: RunMode,
    step: OutputStepName = mode === 'apply' ? 'apply' : 'plan',
  ): Promise<ScriptExecution> {
    const attempt = () =>
      execute[mode]({
        runId: input.runId,
        sha256: pinned.sha256,
        mode,
        step,
        exclusions: exclusions(),
        ...(input.securityOnly === true ? { securityOnly: true } : {}),
        heartbeatMs: timeouts.heartbeatMs,
        ...(container
          ? {
              container: {
                vmid: container.vmid,
                startIfStopped: container.startIfStopped,
                snapshot: container.snapshot,
              },
            }
          : {}),
      });
    const once = container ? () => waitOutLock(attempt, container.lockWaitMs) : attempt;
    if (!verified) {
      await verifyPinned(pinned);
      verified = true;
      return once();
    }
    try {
      return await once();
    } catch (err) {
      const lost =
        err instanceof ActivityFailure &&
        err.cause instanceof ApplicationFailure &&
        err.cause.type === 'script-missing';
      if (!lost) throw err;
      await verifyPinned(pinned);
      return once();
    }
  };
}

/** What a container's state makes the agent refuse (activities/agent/container.ts); never retried by Temporal. */
const CONTAINER_STATES = [
  'container-gone',
  'container-stopped',
  'container-locked',
  'container-unsupported',
  'container-snapshot-unsupported',
];

const isFailure = (err: unknown, type: string) =>
  err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === type;

/**
 * A locked container (a backup, a migration, a snapshot under way) is asked again with backoff —
 * 1 s doubling to 1 min — until `waitMs` has passed; then the lock failure ends the run
 * (skipped-container-locked). Nothing in the container changed while it was locked.
 */
async function waitOutLock<T>(attempt: () => Promise<T>, waitMs: number): Promise<T> {
  const until = Date.now() + waitMs;
  for (let delay = 1000; ; delay = Math.min(delay * 2, 60_000)) {
    try {
      return await attempt();
    } catch (err) {
      if (!isFailure(err, 'container-locked') || Date.now() + delay > until) throw err;
      await sleep(delay);
    }
  }
}
