import {
  CancellationScope,
  ChildWorkflowCancellationType,
  isCancellation,
  ParentClosePolicy,
  patched,
  startChild,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { ContainerOptions, RunOutcome, RunStatus, RunWindow } from '../contract';
import { newRunId } from '../contract/run-id';
import { windowRunTimeouts } from '../contract/workflow-safe';
import { control } from './activities';
import { patchRun } from './patch-run';
import { rollout } from './rollout';
import type { RolloutSummary } from './rollout-messages';
import { PatchContainer, PatchHost, PatchPhase } from './search-attributes';

/** A container nobody set options for: not started when stopped, no snapshot. */
const OFF: ContainerOptions = {
  startIfStopped: false,
  snapshot: 'none',
  from: { startIfStopped: 'off', snapshot: 'off' },
};

/** Set by Temporal on workflows a Schedule starts: the time the firing was meant for. */
const ScheduledStartTime = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

export interface WindowReport {
  windowId: string;
  startsAt: string | null;
  runs: { runId: string; agentId: string; outcome: RunOutcome | null; overran: boolean }[];
  skipped: string | null;
  /** Targets this firing did not run, and why (an agent pending acceptance or revoked). */
  skippedTargets: { agentId: string; reason: string }[];
  /** Issue 12: the rollout this firing started (a window with `rollout`), as it ended. */
  rollout?: { rolloutId: string; state: RolloutSummary['state']; reason: string | null };
}

/**
 * A firing that starts no runs at all sends `window.skipped` (docs/webhooks.md). Behind a patch
 * marker: firings recorded before it replay without this activity.
 */
async function firingSkipped(input: { windowId: string; reason: string }): Promise<void> {
  if (patched('webhook-window-skipped')) await control.windowFiringSkipped(input);
}

/**
 * One firing of a maintenance window: a child patch run per target host (the Temporal UI shows
 * them as this workflow's children), each bound to the window's start, cutoff and end.
 */
export async function maintenanceWindow(input: { windowId: string }): Promise<WindowReport> {
  // Everything else comes from the window's row; only its Schedule may say when it fires.
  const check = await control.checkWindowFiring({ windowId: input.windowId });
  if (!check.verified) {
    await firingSkipped({ windowId: input.windowId, reason: check.reason });
    return { windowId: input.windowId, startsAt: null, runs: [], skipped: check.reason, skippedTargets: [] };
  }
  const firing = await control.loadWindowFiring({ windowId: input.windowId });
  if (!firing) {
    await firingSkipped({ windowId: input.windowId, reason: 'window deleted' });
    return { windowId: input.windowId, startsAt: null, runs: [], skipped: 'window deleted', skippedTargets: [] };
  }
  const skippedTargets = firing.skippedTargets ?? [];

  // A late (caught-up) firing keeps the window's intended times, so the cutoff still holds.
  const scheduledAt = workflowInfo().typedSearchAttributes.get(ScheduledStartTime)?.getTime() ?? Date.now();
  const startsAt = scheduledAt + firing.leadSeconds * 1000;
  const endsAt = startsAt + firing.durationSeconds * 1000;
  const applyBy = endsAt - firing.cutoffSeconds * 1000;
  if (Date.now() > applyBy) {
    // A whole firing with no runs: only this tells admins (a run's skip has its own event).
    await firingSkipped({ windowId: firing.windowId, reason: 'fired after the cutoff' });
    return {
      windowId: firing.windowId,
      startsAt: new Date(startsAt).toISOString(),
      runs: [],
      skipped: 'fired after the cutoff',
      skippedTargets,
    };
  }

  if (firing.rollout) return windowRollout(firing.windowId, { windowId: firing.windowId, startsAt, applyBy, endsAt });

  const mode = firing.approval === 'dry-run-only' ? 'dry-run' : 'apply';
  const approval = firing.approval === 'pre-approved' ? 'required' : 'auto';
  const requestedBy = `window:${firing.windowId}`;
  const planned = firing.agents.map(({ agentId, hostname, container, options }) => ({
    agentId,
    hostname,
    container,
    // Resolved by loadWindowFiring (window > container default > off); firings recorded before: off.
    options: container === undefined ? undefined : (options ?? OFF),
    runId: newRunId(agentId, Date.now(), Math.random, container),
  }));
  // One activity writes every run row (a fleet window is one round-trip, not one per host).
  await control.createRuns(
    planned.map(({ runId, agentId, container, options }) => ({
      runId,
      agentId,
      vmid: container,
      containerOptions: options,
      mode,
      approval,
      requestedBy,
      windowId: firing.windowId,
      windowStart: startsAt,
      // Issue 12: only when the window has them, so firings without them write what they did before.
      ...(firing.reboot ? { reboot: firing.reboot } : {}),
      ...(firing.hooks ? { hooks: firing.hooks } : {}),
    })),
  );
  const children: { runId: string; agentId: string; handle: ChildWorkflowHandle<typeof patchRun> }[] = [];
  for (const { agentId, hostname, runId, container, options } of planned) {
    const handle = await startChild(patchRun, {
      workflowId: runId,
      args: [
        {
          runId,
          agentId,
          hostname,
          mode,
          approval,
          requestedBy,
          // An agent that has not picked up its task by the cutoff cannot patch in this window.
          timeouts: windowRunTimeouts(
            firing.timeouts,
            { windowId: firing.windowId, startsAt, applyBy, endsAt },
            Date.now(),
          ),
          window: { windowId: firing.windowId, startsAt, applyBy, endsAt },
          ...(firing.reboot ? { reboot: firing.reboot } : {}),
          ...(firing.hooks ? { hooks: firing.hooks } : {}),
          // A container (docs/proxmox.md): a locked one is waited for until the window's cutoff.
          ...(container === undefined || options === undefined
            ? {}
            : {
                container: {
                  vmid: container,
                  startIfStopped: options.startIfStopped,
                  snapshot: options.snapshot,
                  lockWaitMs: Math.max(0, applyBy - Date.now()),
                },
              }),
        },
      ],
      typedSearchAttributes: [
        { key: PatchHost, value: hostname },
        { key: PatchPhase, value: 'planning' },
        ...(container === undefined ? [] : [{ key: PatchContainer, value: `${agentId}/${container}` }]),
      ],
      // Never kill a package manager mid-transaction: runs outlive a terminated window workflow.
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    children.push({ runId, agentId, handle });
  }

  // Cancelling the window asks each run to cancel; a run that is applying finishes its apply
  // first (patchRun never interrupts a package manager), and the window still reports every run.
  const all = () => Promise.all(children.map((c) => c.handle.result()));
  const results: RunStatus[] = await all().catch((err) => {
    if (!isCancellation(err)) throw err;
    return CancellationScope.nonCancellable(all);
  });
  return {
    windowId: firing.windowId,
    startsAt: new Date(startsAt).toISOString(),
    runs: results.map((r, i) => ({
      runId: children[i].runId,
      agentId: children[i].agentId,
      outcome: r.outcome,
      overran: r.overran,
    })),
    skipped: null,
    skippedTargets,
  };
}

/**
 * Issue 12: a window with `rollout` starts one rollout per firing (docs/rollouts.md): its targets
 * resolved now, its runs bound to this window, no host started after the cutoff. The rollout is a
 * child under its own id (so its claim accepts it) that outlives this workflow, and cancelling the
 * window does not cancel it (a rollout is stopped by its own abort).
 */
async function windowRollout(windowId: string, window: RunWindow): Promise<WindowReport> {
  const startsAt = new Date(window.startsAt).toISOString();
  const made = await control.startWindowRollout({ windowId, window });
  if (made.rolloutId === null) {
    await firingSkipped({ windowId, reason: made.reason });
    return { windowId, startsAt, runs: [], skipped: made.reason, skippedTargets: made.skippedTargets };
  }
  const child = await startChild(rollout, {
    workflowId: made.rolloutId,
    args: [{ rolloutId: made.rolloutId }],
    parentClosePolicy: ParentClosePolicy.ABANDON,
    cancellationType: ChildWorkflowCancellationType.ABANDON,
  });
  const result = await child.result().catch((err) => {
    if (!isCancellation(err)) throw err;
    return CancellationScope.nonCancellable(() => child.result());
  });
  return {
    windowId,
    startsAt,
    runs: [], // the rollout's own (GET /v1/rollouts/:id)
    skipped: null,
    skippedTargets: made.skippedTargets,
    rollout: { rolloutId: made.rolloutId, state: result.state, reason: result.reason },
  };
}
