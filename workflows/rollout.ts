import {
  condition,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  setHandler,
  sleep,
  startChild,
} from '@temporalio/workflow';
import { DEFAULT_CONTAINER_LOCK_WAIT_MS, type ContainerOptions, type RunOutcome } from '../contract';
import { BUDGET_OUTCOMES } from '../contract/rollout-policy';
import { newRunId } from '../contract/run-id';
import { windowRunTimeouts } from '../contract/workflow-safe';
import type { RolloutState } from '../db/rollouts';
import { control } from './activities';
import { patchRun } from './patch-run';
import {
  abortRolloutSignal,
  pauseRolloutSignal,
  resumeRolloutSignal,
  rolloutSummaryQuery,
  type RolloutSummary,
} from './rollout-messages';
import { PatchContainer, PatchHost, PatchPhase } from './search-attributes';

interface Host {
  agentId: string;
  hostname: string;
  wave: number;
  /** A container of the agent's Proxmox VE node (docs/proxmox.md), with its resolved options. */
  container?: number;
  options?: ContainerOptions;
  runId: string | null;
  outcome: RunOutcome | null;
}

/**
 * A rollout (docs/rollouts.md): its hosts in waves — the canary, all of whose runs end before
 * anything else starts, then the rest — each host a child patchRun, at most `maxConcurrency` at a
 * time (the next starts as one ends). One error budget for the whole rollout: once more hosts
 * failed (BUDGET_OUTCOMES) than it allows, no new host starts, running ones finish, and the
 * rollout ends `halted`. Pause stops new starts; abort also cancels every run that has not begun
 * applying (patchRun finishes an apply it has begun) and ends `aborted`.
 *
 * History per host: the child's initiated/started/completed events plus its share of the
 * workflow tasks and of one local-activity marker per batch (measured: docs/rollouts.md), so a
 * 1,000-host rollout stays far below Temporal's 50k-event limit without continue-as-new.
 */
export async function rollout(input: { rolloutId: string }): Promise<RolloutSummary> {
  const { rolloutId } = input;
  const claim = await control.claimRollout({ rolloutId });
  if (!claim.claimed) {
    // Nothing of the rollout's is touched: it is not this execution's (docs/rollouts.md).
    return summary(rolloutId, [], 'aborted', `refused: ${claim.reason}`, 0, 0, 0);
  }
  const { plan } = claim;
  const hosts: Host[] = plan.hosts.map((h) => ({ ...h, runId: null, outcome: null }));
  const waves = [...new Set(hosts.map((h) => h.wave))].sort((a, b) => a - b);

  let running = 0;
  let failures = 0;
  let paused = false;
  let pausedRecorded = false;
  let by = 'system';
  // Set by signal handlers and child results: typed wide so checks after awaits are not narrowed away.
  let aborted = null as string | null;
  let halted = null as string | null;
  let seq = 0;
  let ended: RolloutState | null = null;
  const open = new Set<string>();
  // A window's rollout starts no host after the window's applyBy (its cutoff); the timer exists
  // only for them, so rollouts started through the API replay exactly as before.
  let cutoff = false;
  if (plan.window)
    void sleep(Math.max(1, plan.window.applyBy - Date.now())).then(
      () => {
        cutoff = true;
      },
      () => undefined, // cancelled with the workflow: nothing left to cut off
    );

  setHandler(pauseRolloutSignal, (c) => {
    by = nameOf(c);
    paused = true;
  });
  setHandler(resumeRolloutSignal, (c) => {
    by = nameOf(c);
    paused = false;
  });
  setHandler(abortRolloutSignal, (c) => {
    aborted ??= nameOf(c);
  });
  setHandler(rolloutSummaryQuery, () =>
    summary(
      rolloutId,
      hosts,
      state(),
      halted ?? (aborted ? `aborted by ${aborted}` : null),
      running,
      failures,
      plan.allowedFailures,
    ),
  );

  function state(): RolloutState {
    if (ended) return ended;
    if (aborted) return 'aborted';
    if (halted) return 'halted';
    return paused ? 'paused' : 'running';
  }

  const record = (s: RolloutState, reason: string | null, actor = `workflow:${rolloutId}`) =>
    control.recordRolloutState({ rolloutId, state: s, failures, reason, by: actor, seq: ++seq });

  /** Persist a pause or resume the moment the main loop sees it (signal handlers stay synchronous). */
  async function recordPause() {
    if (paused === pausedRecorded) return;
    pausedRecorded = paused;
    await record(paused ? 'paused' : 'running', null, by);
  }

  function done(host: Host, outcome: RunOutcome) {
    host.outcome = outcome;
    running--;
    open.delete(host.runId!);
    if (BUDGET_OUTCOMES.has(outcome)) failures++;
    if (failures > plan.allowedFailures && halted === null)
      halted = `${failures} failed hosts exceed maxFailures (${plan.allowedFailures} allowed)`;
  }

  /** Write the batch's run rows in one activity, then start a child patchRun per host. */
  async function start(batch: Host[]) {
    for (const h of batch) h.runId = newRunId(h.agentId, Date.now(), Math.random, h.container);
    running += batch.length;
    await control.startRolloutHosts({
      rolloutId,
      mode: plan.mode,
      approval: plan.approval,
      ...(plan.reboot ? { reboot: plan.reboot } : {}),
      ...(plan.hooks ? { hooks: plan.hooks } : {}),
      hosts: batch.map((h) => ({
        agentId: h.agentId,
        runId: h.runId!,
        ...(h.container !== undefined ? { container: h.container, options: h.options } : {}),
      })),
    });
    await Promise.all(
      batch.map(async (h) => {
        const runId = h.runId!;
        const child = await startChild(patchRun, {
          workflowId: runId,
          args: [
            {
              runId,
              agentId: h.agentId,
              hostname: h.hostname,
              mode: plan.mode,
              approval: plan.approval,
              requestedBy: `rollout:${rolloutId}`,
              // A window's rollout: the deadlines its window firing would give the run (pickup by the cutoff).
              timeouts: plan.window ? windowRunTimeouts(plan.timeouts, plan.window, Date.now()) : plan.timeouts,
              ...(plan.window ? { window: plan.window } : {}),
              // Issue 12: the same policy the run rows record, or the claim refuses the run.
              ...(plan.reboot ? { reboot: plan.reboot } : {}),
              ...(plan.hooks ? { hooks: plan.hooks } : {}),
              // A container: the options its run row records; a locked one is waited for (docs/proxmox.md).
              ...(h.container !== undefined && h.options
                ? {
                    container: {
                      vmid: h.container,
                      startIfStopped: h.options.startIfStopped,
                      snapshot: h.options.snapshot,
                      lockWaitMs: DEFAULT_CONTAINER_LOCK_WAIT_MS,
                    },
                  }
                : {}),
            },
          ],
          typedSearchAttributes: [
            { key: PatchHost, value: h.hostname },
            { key: PatchPhase, value: 'planning' },
            ...(h.container === undefined ? [] : [{ key: PatchContainer, value: `${h.agentId}/${h.container}` }]),
          ],
          // Never kill a package manager mid-transaction: runs outlive a terminated rollout.
          parentClosePolicy: ParentClosePolicy.ABANDON,
        });
        open.add(runId);
        // patchRun never fails as a workflow; a child terminated by hand counts as failed.
        void child.result().then(
          (r) => done(h, r.outcome ?? 'failed'),
          () => done(h, 'failed'),
        );
      }),
    );
  }

  /** Wait until `until` holds, recording any pause/resume on the way. */
  async function waitFor(until: () => boolean) {
    for (;;) {
      await condition(() => until() || paused !== pausedRecorded);
      await recordPause();
      if (until()) return;
    }
  }

  /**
   * Past the window's cutoff. The timer wakes a waiting rollout; the clock check also covers a
   * host that ends at the very moment of the cutoff (its result may be handled before the timer).
   */
  const pastCutoff = () => {
    if (plan.window && Date.now() >= plan.window.applyBy) cutoff = true;
    return cutoff;
  };
  const stopped = () => aborted !== null || halted !== null || pastCutoff();
  for (const wave of waves) {
    const queue = hosts.filter((h) => h.wave === wave);
    let next = 0;
    while (next < queue.length) {
      await waitFor(() => stopped() || (!paused && running < plan.maxConcurrency));
      if (stopped()) break;
      const batch = queue.slice(next, next + plan.maxConcurrency - running);
      next += batch.length;
      await start(batch);
    }
    // A wave ends when all its runs have (the canary before anything else starts).
    await waitFor(() => running === 0 || aborted !== null);
    if (stopped()) break;
  }

  if (aborted !== null) {
    // Cancel what has not begun applying; patchRun defers a cancel during apply and reports it.
    await Promise.all(
      [...open].map((id) =>
        getExternalWorkflowHandle(id)
          .cancel()
          .catch(() => undefined),
      ),
    );
    await waitFor(() => running === 0);
  }
  const notStarted = hosts.filter((h) => h.runId === null).length;
  if (cutoff && aborted === null && halted === null && notStarted > 0)
    halted = `window cutoff reached: ${notStarted} hosts not started`;
  const end: RolloutState = aborted !== null ? 'aborted' : halted !== null ? 'halted' : 'completed';
  ended = end;
  const reason = aborted !== null ? `aborted by ${aborted}` : halted;
  await record(end, reason, aborted ?? `workflow:${rolloutId}`);
  return summary(rolloutId, hosts, end, reason, 0, failures, plan.allowedFailures);
}

const nameOf = (c: unknown) => {
  const who = (c as { by?: unknown } | null)?.by;
  return typeof who === 'string' && who.length > 0 ? who.slice(0, 200) : 'unknown';
};

function summary(
  rolloutId: string,
  hosts: Host[],
  state: RolloutState,
  reason: string | null,
  running: number,
  spent: number,
  allowed: number,
): RolloutSummary {
  const waves = [...new Set(hosts.map((h) => h.wave))].sort((a, b) => a - b);
  return {
    rolloutId,
    state,
    reason,
    total: hosts.length,
    running,
    waves: waves.map((wave) => {
      const of = hosts.filter((h) => h.wave === wave);
      return {
        wave,
        hosts: of.length,
        started: of.filter((h) => h.runId !== null).length,
        finished: of.filter((h) => h.outcome !== null).length,
        failed: of.filter((h) => h.outcome !== null && BUDGET_OUTCOMES.has(h.outcome)).length,
      };
    }),
    budget: { allowed, spent, left: Math.max(0, allowed - spent) },
    hosts: hosts.map(({ agentId, wave, runId, outcome }) => ({ agentId, wave, runId, outcome })),
  };
}
