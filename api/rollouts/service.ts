import type { Client } from '@temporalio/client';
import { requireHooks } from '../hooks/service';
import { WorkflowNotFoundError } from '@temporalio/common';
import { BUDGET_OUTCOMES } from '../../contract/rollout-policy';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { createRollout } from '../../db/rollout-create';
import {
  deleteRollout,
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
import type { StartRolloutBody } from './schema';

export interface RolloutsDeps {
  db: Db;
  temporal: Client;
  controlQueue: string;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);
const ENDED = new Set(['halted', 'aborted', 'completed']);

function toRollout(r: RolloutRow) {
  return {
    id: r.id,
    name: r.name,
    targets: r.targets,
    mode: r.mode,
    approval: r.approval,
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
        canary: body.canary,
        maxConcurrency: body.maxConcurrency,
        maxFailures: body.maxFailures,
        reboot: body.reboot,
        hooks: body.hooks,
        rebootTimeoutSeconds: body.rebootTimeoutSeconds,
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
      hosts: hosts.map((h) => ({ agentId: h.id, hostname: h.hostname, wave: h.wave })),
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
    return {
      ...toRollout(row),
      waves: wavesOf(hosts),
      budget: budgetOf(row.allowed_failures, spent),
      hosts: hosts.map((h) => ({
        agentId: h.agent_id,
        hostname: h.hostname,
        wave: h.wave,
        runId: h.run_id,
        phase: h.phase,
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

  return { start, list, get, control };
}
export type RolloutsService = ReturnType<typeof rolloutsService>;
