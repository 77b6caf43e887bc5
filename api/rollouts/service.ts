import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { requireHooks } from '../hooks/service';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { approvalProblem, type SignedApproval } from '../../contract/approval';
import { approverKeys } from '../../db/approver-keys';
import { getWindow } from '../../db/windows';
import { pool } from '../../runtime/pool';
import { approveUpdate } from '../../workflows/messages';
import { BUDGET_OUTCOMES } from '../../contract/rollout-policy';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { createRollout } from '../../db/rollout-create';
import {
  deleteRollout,
  awaitingRunsOf,
  planApprovalsOf,
  recordPlanApproval,
  rolloutHasPlan,
  getRollout,
  listRollouts,
  rolloutHosts,
  rolloutOutcomeCounts,
  type RolloutHostRow,
  type RolloutRow,
} from '../../db/rollouts';
import { rollout as rolloutWorkflow } from '../../workflows/rollout';
import { abortRolloutSignal, pauseRolloutSignal, resumeRolloutSignal } from '../../workflows/rollout-messages';
import { ApiError, notFound } from '../errors';
import type { ApprovePlanGroupBody, StartRolloutBody } from './schema';
import { iso } from '../views';

export interface RolloutsDeps {
  db: Db;
  temporal: Client;
  controlQueue: string;
}

const ENDED = new Set(['halted', 'aborted', 'completed']);

function toRollout(r: RolloutRow) {
  return {
    id: r.id,
    name: r.name,
    targets: r.targets,
    mode: r.mode,
    approval: r.approval,
    approvalScope: r.approval_scope,
    canary: r.canary,
    canaryHosts: r.canary_count,
    maxConcurrency: r.max_concurrency,
    maxFailures: r.max_failures,
    state: r.state,
    stateReason: r.state_reason,
    reboot: r.reboot,
    hooks: r.hooks,
    skippedTargets: r.skipped_targets,
    rebootTimeoutSeconds: r.reboot_timeout_seconds,
    /** The window firing that started the rollout; null: started through the API. */
    window: r.window
      ? {
          windowId: r.window.windowId,
          startsAt: new Date(r.window.startsAt).toISOString(),
          applyBy: new Date(r.window.applyBy).toISOString(),
          endsAt: new Date(r.window.endsAt).toISOString(),
        }
      : null,
    createdBy: r.created_by,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    finishedAt: iso(r.finished_at),
  };
}

/** The budget from the runs' own outcomes (the workflow counts the same set, contract/rollout-policy.ts). */
const budgetOf = (allowed: number, spent: number) => ({ allowed, spent, left: Math.max(0, allowed - spent) });

function wavesOf(hosts: RolloutHostRow[]) {
  const waves = [...new Set(hosts.map((h) => h.wave))].sort((a, b) => a - b);
  return waves.map((wave) => {
    const of = hosts.filter((h) => h.wave === wave);
    return {
      wave,
      kind: wave === 1 && waves.length > 1 ? 'canary' : 'rest',
      hosts: of.length,
      started: of.filter((h) => h.run_id !== null).length,
      finished: of.filter((h) => h.outcome !== null).length,
      failed: of.filter((h) => h.outcome !== null && BUDGET_OUTCOMES.has(h.outcome)).length,
    };
  });
}

export function rolloutsService({ db, temporal, controlQueue }: RolloutsDeps) {
  async function start(body: StartRolloutBody, by: string) {
    // A hook that was never uploaded would fail every host's run: refuse the rollout instead (400).
    await requireHooks(db, body.hooks);
    const made = await createRollout(
      db,
      {
        name: body.name ?? '',
        targets: body.targets,
        mode: body.mode,
        approval: body.approval,
        approvalScope: body.approvalScope,
        canary: body.canary,
        maxConcurrency: body.maxConcurrency,
        maxFailures: body.maxFailures,
        reboot: body.reboot,
        hooks: body.hooks,
        rebootTimeoutSeconds: body.rebootTimeoutSeconds,
        startIfStopped: body.startIfStopped,
        snapshot: body.snapshot,
        createdBy: by,
      },
      'refuse',
    );
    if (!made.ok) throw new ApiError('validation_failed', made.message, made.field);
    const { row, hosts } = made;
    const id = row.id;
    try {
      await temporal.workflow.start(rolloutWorkflow, {
        taskQueue: controlQueue,
        workflowId: id,
        args: [{ rolloutId: id }],
      });
    } catch (err) {
      // Nothing half-made: a rollout Temporal never accepted does not exist.
      const reason = err instanceof Error ? err.message : String(err);
      await db.transaction(async (trx) => {
        await deleteRollout(trx, id);
        await appendAudit(trx, { actor: by, kind: 'rollout.start-failed', subject: id, detail: { reason } });
      });
      throw new ApiError('unavailable', `could not start the rollout on Temporal: ${reason}`);
    }
    return {
      ...toRollout(row),
      hosts: hosts.map((h) => ({
        agentId: h.id,
        hostname: h.hostname,
        ...(h.vmid ? { container: h.vmid, containerOptions: h.options } : {}),
        wave: h.wave,
      })),
      budget: budgetOf(made.allowedFailures, 0),
    };
  }

  async function list() {
    const rows = await listRollouts(db);
    const counts = await rolloutOutcomeCounts(
      db,
      rows.map((r) => r.id),
    );
    return rows.map((r) => {
      const mine = counts.filter((c) => c.rollout_id === r.id);
      const sum = (f: (c: (typeof mine)[number]) => boolean) => mine.filter(f).reduce((n, c) => n + c.n, 0);
      return {
        ...toRollout(r),
        progress: {
          hosts: sum(() => true),
          started: sum((c) => c.started),
          finished: sum((c) => c.outcome !== null),
        },
        budget: budgetOf(
          r.allowed_failures,
          sum((c) => c.outcome !== null && BUDGET_OUTCOMES.has(c.outcome)),
        ),
      };
    });
  }

  async function get(id: string) {
    const row = await getRollout(db, id);
    if (!row) throw notFound(`rollout ${id}`);
    const hosts = await rolloutHosts(db, id);
    const spent = hosts.filter((h) => h.outcome !== null && BUDGET_OUTCOMES.has(h.outcome)).length;
    const approvals = row.approval_scope === 'plan-group' ? await planApprovalsOf(db, id) : [];
    return {
      ...toRollout(row),
      planApprovals: approvals.map((a) => ({
        planHash: a.plan_hash,
        by: a.approved_by,
        at: a.approval.at,
        keyId: a.approval.keyId,
        recordedAt: iso(a.created_at),
      })),
      waves: wavesOf(hosts),
      budget: budgetOf(row.allowed_failures, spent),
      hosts: hosts.map((h) => ({
        agentId: h.agent_id,
        hostname: h.hostname,
        ...(h.vmid ? { container: h.vmid, containerOptions: h.container_options } : {}),
        wave: h.wave,
        runId: h.run_id,
        phase: h.phase,
        planHash: h.plan_hash,
        outcome: h.outcome,
        startedAt: iso(h.started_at),
        finishedAt: iso(h.finished_at),
      })),
    };
  }

  const SIGNALS = { pause: pauseRolloutSignal, resume: resumeRolloutSignal, abort: abortRolloutSignal };

  /** Ask the rollout's workflow to pause, resume or abort; the request is audited, the change when it happens. */
  async function control(id: string, action: keyof typeof SIGNALS, by: string) {
    const row = await getRollout(db, id);
    if (!row) throw notFound(`rollout ${id}`);
    if (ENDED.has(row.state)) throw new ApiError('conflict', `rollout ${id} already ended: ${row.state}`);
    try {
      await temporal.workflow.getHandle(id).signal(SIGNALS[action], { by });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new ApiError('conflict', `rollout ${id} is no longer running`);
      throw err;
    }
    await appendAudit(db, { actor: by, kind: `rollout.${action}-requested`, subject: id });
    return toRollout(row);
  }

  /**
   * A plan-group approval (docs/rollouts.md "Approval scope"): checked here as each run will
   * check it — signed by the caller's registered key over the rollout's id and the plan hash,
   * after the rollout began and within 24 h, never by the rollout's creator — then recorded and
   * delivered to each of the rollout's runs waiting with exactly that plan (each still checks it
   * itself and refuses drift at apply). Hosts that plan it later find the record themselves.
   */
  async function approvePlan(id: string, body: ApprovePlanGroupBody, by: string) {
    const row = await getRollout(db, id);
    if (!row) throw notFound(`rollout ${id}`);
    if (row.approval_scope !== 'plan-group')
      throw new ApiError(
        'conflict',
        `rollout ${id} approves each host's plan on its own (approvalScope per-run): approve its runs`,
      );
    if (ENDED.has(row.state)) throw new ApiError('conflict', `rollout ${id} already ended: ${row.state}`);
    const creators = [row.created_by];
    const windowId = /^window:(.+)$/.exec(row.created_by)?.[1];
    if (windowId) creators.push((await getWindow(db, windowId))?.created_by ?? row.created_by);
    if (creators.includes(by))
      throw new ApiError('forbidden', `four-eyes: ${by} created rollout ${id} and cannot give its plan-group approval`);
    if (!(await rolloutHasPlan(db, id, body.planHash)))
      throw new ApiError('conflict', `no host of rollout ${id} has planned ${body.planHash}`);
    const signed: SignedApproval = { ...body, runId: id, by };
    const problem = approvalProblem(signed, {
      runId: id,
      planHash: body.planHash,
      keys: await approverKeys(db),
      now: Date.now(),
      planAt: row.created_at.getTime(),
    });
    if (problem) throw new ApiError('forbidden', `refused approval: ${problem}`);
    await recordPlanApproval(db, signed, id);
    const waiting = await awaitingRunsOf(db, id, body.planHash);
    const results = await pool(waiting, 8, async (runId) => {
      try {
        await temporal.workflow.getHandle(runId).executeUpdate(approveUpdate, { args: [signed] });
        return { runId, ok: true as const };
      } catch (err) {
        // The run refused it (its own four-eyes, a plan that changed meanwhile) or ended: it says why.
        const cause = err instanceof WorkflowUpdateFailedError ? err.cause : err;
        const message = cause instanceof ApplicationFailure || cause instanceof Error ? cause.message : String(cause);
        return { runId, ok: false as const, message };
      }
    });
    return {
      approval: { rolloutId: id, planHash: body.planHash, by, at: body.at, keyId: body.keyId },
      approved: results.filter((r) => r.ok).map((r) => r.runId),
      refused: results.flatMap((r) => (r.ok ? [] : [{ runId: r.runId, message: r.message }])),
    };
  }

  return { start, list, get, control, approvePlan };
}
export type RolloutsService = ReturnType<typeof rolloutsService>;
