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
} from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { insertRunRows } from '../../db/runs';
import type { RebootPolicy, RunHooks } from '../../contract/rollout-policy';
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
        timeouts: resolveRunTimeouts(runDefaults),
        ...(row.reboot && row.reboot !== 'never' ? { reboot: row.reboot } : {}),
        ...(row.hooks ? { hooks: row.hooks } : {}),
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
      const owned = await trx<{ id: string; workflow_run_id: string | null }>('rollouts')
        .where({ id: input.rolloutId, workflow_run_id: e.runId })
        .first('id');
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

  return { claimRollout, startRolloutHosts, recordRolloutState };
}
