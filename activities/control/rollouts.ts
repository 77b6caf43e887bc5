/**
 * Control-side activities of the rollout workflow (workflows/rollout.ts): claim the rollout,
 * write a batch of host runs, record its state changes. The rollout's policy and targets come
 * from its row (written by the API), never from the workflow's input.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import {
  resolveContainerOptions,
  resolveRunTimeouts,
  type ContainerOptions,
  type ApprovalPolicy,
  type ConfigurableTimeouts,
  type RunMode,
  type RunTimeouts,
  type RunWindow,
} from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { insertRunRows } from '../../db/runs';
import { rebootMsOf, type RebootPolicy, type RunHooks } from '../../contract/rollout-policy';
import { createRollout, type SkippedTarget } from '../../db/rollout-create';
import { getWindow, getWindowFiring, recordWindowFiring } from '../../db/windows';
import {
  claimRollout as claimRow,
  getRollout,
  markTargetsStarted,
  rolloutTargets,
  setRolloutState,
  type RolloutState,
} from '../../db/rollouts';

/** What a rollout workflow needs to schedule its hosts. */
export interface RolloutPlan {
  rolloutId: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  maxConcurrency: number;
  /** The most failures tolerated; one more halts the rollout. */
  allowedFailures: number;
  timeouts: RunTimeouts;
  /** Issue 12: every host's run reboots and runs hooks as the rollout says (absent: never, none). */
  reboot?: RebootPolicy;
  hooks?: RunHooks;
  /**
   * Set when a window firing started the rollout: every run is bound to it (and the run rows say
   * so, or the claim refuses them), and no host starts after its applyBy.
   */
  window?: RunWindow;
  /** In rollout order; wave 1 is the canary when there is one. A container target has its vmid and options. */
  hosts: { agentId: string; hostname: string; wave: number; container?: number; options?: ContainerOptions }[];
}

/** A container target recorded before its options were: off (not started when stopped, no snapshot). */
const OFF: ContainerOptions = resolveContainerOptions({});

export type RolloutClaim = { claimed: true; plan: RolloutPlan } | { claimed: false; reason: string };

function execution() {
  const e = Context.current().info.workflowExecution;
  if (!e) throw ApplicationFailure.nonRetryable('not scheduled by a workflow', 'rollout-not-claimed');
  return e;
}

export function createRolloutActivities(db: Db, runDefaults: ConfigurableTimeouts) {
  /** The first execution of a rollout's workflow owns it; its row says what to run. */
  async function claimRollout(input: { rolloutId: string }): Promise<RolloutClaim> {
    const e = execution();
    if (e.workflowId !== input.rolloutId)
      return { claimed: false, reason: `workflow ${e.workflowId} is not rollout ${input.rolloutId}` };
    if (!(await getRollout(db, input.rolloutId))) return { claimed: false, reason: `no rollout ${input.rolloutId}` };
    const row = await claimRow(db, input.rolloutId, e.runId);
    if (!row) return { claimed: false, reason: `rollout ${input.rolloutId} belongs to another execution` };
    const hosts = await rolloutTargets(db, row.id);
    return {
      claimed: true,
      plan: {
        rolloutId: row.id,
        mode: row.mode,
        approval: row.approval,
        maxConcurrency: row.max_concurrency,
        allowedFailures: row.allowed_failures,
        timeouts: {
          ...resolveRunTimeouts(runDefaults),
          // Only when the rollout sets its own: rollouts without one run exactly as before.
          ...(row.reboot_timeout_seconds ? { rebootMs: rebootMsOf(row.reboot_timeout_seconds) } : {}),
        },
        ...(row.reboot && row.reboot !== 'never' ? { reboot: row.reboot } : {}),
        ...(row.hooks ? { hooks: row.hooks } : {}),
        ...(row.window ? { window: row.window } : {}),
        hosts: hosts.map((h) => ({
          agentId: h.agent_id,
          hostname: h.hostname,
          wave: h.wave,
          // Only container targets carry these, so a host target's plan is what it was before.
          ...(h.vmid ? { container: h.vmid, options: h.container_options ?? OFF } : {}),
        })),
      },
    };
  }

  /**
   * A batch of hosts the rollout starts now: their run rows, each audited as requested by
   * `rollout:<id>`, and the targets marked started (with the time, for the concurrency record),
   * in one transaction. Idempotent under retries (rows merge, marks only unmarked targets).
   */
  async function startRolloutHosts(input: {
    rolloutId: string;
    mode: RunMode;
    approval: ApprovalPolicy;
    reboot?: RebootPolicy;
    hooks?: RunHooks;
    hosts: { agentId: string; runId: string; container?: number; options?: ContainerOptions }[];
  }): Promise<void> {
    const e = execution();
    const requestedBy = `rollout:${input.rolloutId}`;
    await db.transaction(async (trx) => {
      const owned = await trx<{ id: string; workflow_run_id: string | null; window: RunWindow | null }>('rollouts')
        .where({ id: input.rolloutId, workflow_run_id: e.runId })
        .first('id', 'window');
      if (!owned)
        throw ApplicationFailure.nonRetryable(
          `rollout ${input.rolloutId} is not this execution's`,
          'rollout-not-claimed',
        );
      await insertRunRows(
        trx,
        input.hosts.map((h) => ({
          runId: h.runId,
          agentId: h.agentId,
          mode: input.mode,
          approval: input.approval,
          requestedBy,
          ...(h.container !== undefined ? { vmid: h.container, containerOptions: h.options } : {}),
          // A window's rollout: the window from the rollout's row, as the run claim compares it.
          ...(owned.window ? { windowId: owned.window.windowId, windowStart: owned.window.startsAt } : {}),
          ...(input.reboot ? { reboot: input.reboot } : {}),
          ...(input.hooks ? { hooks: input.hooks } : {}),
        })),
      );
      for (const h of input.hosts)
        await appendAudit(trx, {
          actor: requestedBy,
          kind: 'run.requested',
          subject: h.runId,
          detail: {
            agentId: h.agentId,
            ...(h.container !== undefined ? { container: h.container } : {}),
            mode: input.mode,
            approval: input.approval,
            rolloutId: input.rolloutId,
          },
          dedupeKey: `run.requested:${h.runId}`,
        });
      await markTargetsStarted(
        trx,
        input.rolloutId,
        input.hosts.map((h) => ({ agentId: h.agentId, vmid: h.container, runId: h.runId })),
      );
    });
  }

  /** A state change (pause, resume, halt, abort, the end), audited with it. */
  async function recordRolloutState(input: {
    rolloutId: string;
    state: RolloutState;
    failures: number;
    reason: string | null;
    by: string;
    seq: number;
  }): Promise<void> {
    const ok = await setRolloutState(db, { ...input, workflowRunId: execution().runId });
    if (!ok)
      throw ApplicationFailure.nonRetryable(
        `rollout ${input.rolloutId} is not this execution's`,
        'rollout-not-claimed',
      );
  }

  /**
   * A window firing that starts a rollout (issue 12): resolve the window's targets now, make the
   * rollout (createRollout, as POST /v1/rollouts does) bound to this firing's window, and record
   * the firing's resolved set with the rollout's id, in one transaction. A retry finds the
   * rollout this firing already made (window_firings is keyed by the firing's execution, from
   * the activity Context), so a firing makes at most one. The rollout's runs are the window's:
   * `dry-run-only` plans only; nobody is asked to approve (pre-approved windows cannot have one).
   */
  async function startWindowRollout(input: {
    windowId: string;
    window: RunWindow;
  }): Promise<
    | { rolloutId: string; skippedTargets: SkippedTarget[] }
    | { rolloutId: null; reason: string; skippedTargets: SkippedTarget[] }
  > {
    const e = execution();
    return db.transaction(async (trx) => {
      const before = await getWindowFiring(trx, e.runId);
      if (before?.rollout_id) return { rolloutId: before.rollout_id, skippedTargets: before.skipped_targets };
      const w = await getWindow(trx, input.windowId);
      if (!w?.rollout) return { rolloutId: null, reason: 'window deleted or has no rollout', skippedTargets: [] };
      const targets = {
        ...(w.targets.agentIds.length > 0 ? { agentIds: w.targets.agentIds } : {}),
        ...(w.targets.selector ? { selector: w.targets.selector } : {}),
      };
      const made = await createRollout(
        trx,
        {
          name: w.name,
          targets,
          mode: w.approval === 'dry-run-only' ? 'dry-run' : 'apply',
          approval: 'auto',
          canary: w.rollout.canary,
          maxConcurrency: w.rollout.maxConcurrency,
          maxFailures: w.rollout.maxFailures,
          ...(w.reboot_policy ? { reboot: w.reboot_policy } : {}),
          ...(w.hooks ? { hooks: w.hooks } : {}),
          ...(w.reboot_timeout_seconds ? { rebootTimeoutSeconds: w.reboot_timeout_seconds } : {}),
          window: input.window,
          createdBy: `window:${w.id}`,
        },
        'skip',
      );
      const skippedTargets = made.skipped;
      await recordWindowFiring(trx, {
        workflow_run_id: e.runId,
        workflow_id: e.workflowId,
        window_id: w.id,
        selector: w.targets.selector ?? null,
        agent_ids: made.ok ? made.hosts.map((h) => h.id) : [],
        skipped_targets: skippedTargets,
        rollout_id: made.ok ? made.row.id : null,
      });
      if (!made.ok) return { rolloutId: null, reason: made.message, skippedTargets };
      return { rolloutId: made.row.id, skippedTargets };
    });
  }

  return { claimRollout, startRolloutHosts, recordRolloutState, startWindowRollout };
}
