import type { Client } from '@temporalio/client';
import { requireHooks } from '../hooks/service';
import { WorkflowNotFoundError } from '@temporalio/common';
import { ulid } from 'ulid';
import { matchesSelector } from '../../contract/labels';
import { BUDGET_OUTCOMES } from '../../contract/rollout-policy';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import {
  deleteRollout,
  agentsWithLabels,
  getRollout,
  insertRollout,
  listRollouts,
  rolloutHosts,
  rolloutOutcomeCounts,
  type RolloutHostRow,
  type RolloutRow,
} from '../../db/rollouts';
import { rollout as rolloutWorkflow } from '../../workflows/rollout';
import { abortRolloutSignal, pauseRolloutSignal, resumeRolloutSignal } from '../../workflows/rollout-messages';
import { ApiError, notFound } from '../errors';
import { MAX_ROLLOUT_HOSTS, type StartRolloutBody } from './schema';
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
    canary: r.canary,
    canaryHosts: r.canary_count,
    maxConcurrency: r.max_concurrency,
    maxFailures: r.max_failures,
    state: r.state,
    stateReason: r.state_reason,
    reboot: r.reboot,
    hooks: r.hooks,
    skippedTargets: r.skipped_targets,
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
  /**
   * The hosts a rollout targets, now: the named agents, then the selector's matches (by id), once
   * each. Only accepted agents run; pending and revoked ones are recorded as skipped, with why.
   */
  async function resolveTargets(targets: StartRolloutBody['targets']) {
    const named = targets.agentIds ?? [];
    const rows = await agentsWithLabels(db);
    const byId = new Map(rows.map((r) => [r.id, r]));
    const unknown = named.filter((id) => !byId.has(id));
    if (unknown.length > 0)
      throw new ApiError(
        'validation_failed',
        `targets.agentIds: unknown agent ${unknown.join(', ')}`,
        'targets.agentIds',
      );
    const selected = targets.selector ? rows.filter((r) => matchesSelector(r.labels ?? {}, targets.selector!)) : [];
    const wanted = [...new Set([...named, ...selected.map((r) => r.id)])].map((id) => byId.get(id)!);
    const hosts = wanted.filter((a) => a.status === 'accepted');
    const skipped = wanted
      .filter((a) => a.status !== 'accepted')
      .map((a) => ({
        agentId: a.id,
        reason: a.status === 'pending' ? 'agent is pending acceptance' : `agent is ${a.status}`,
      }));
    return { hosts, skipped };
  }

  async function start(body: StartRolloutBody, by: string) {
    const { hosts, skipped } = await resolveTargets(body.targets);
    if (hosts.length === 0)
      throw new ApiError(
        'validation_failed',
        `targets: no accepted agent matches${skipped.length ? ` (skipped: ${skipped.map((s) => `${s.agentId}: ${s.reason}`).join('; ')})` : ''}`,
        'targets',
      );
    if (hosts.length > MAX_ROLLOUT_HOSTS)
      throw new ApiError('validation_failed', `targets: at most ${MAX_ROLLOUT_HOSTS} hosts a rollout`, 'targets');
    const total = hosts.length;
    // A percentage canary rounds up (5% of 10 hosts is 1 host, never 0); a percentage budget rounds down.
    const canaryCount = !body.canary
      ? 0
      : Math.min(
          total,
          'count' in body.canary ? body.canary.count : Math.max(1, Math.ceil((body.canary.percent * total) / 100)),
        );
    const allowed =
      'count' in body.maxFailures ? body.maxFailures.count : Math.floor((body.maxFailures.percent * total) / 100);
    // A hook that was never uploaded would fail every host's run: refuse the rollout instead (400).
    await requireHooks(db, body.hooks);
    const id = `rol-${ulid().toLowerCase()}`;
    const row = await db.transaction(async (trx) => {
      const inserted = await insertRollout(
        trx,
        {
          id,
          name: body.name ?? '',
          targets: body.targets,
          mode: body.mode,
          approval: body.approval,
          canary: body.canary ?? null,
          canary_count: canaryCount,
          max_concurrency: body.maxConcurrency,
          max_failures: body.maxFailures,
          allowed_failures: allowed,
          reboot: body.reboot ?? null,
          hooks: body.hooks ?? null,
          skipped_targets: skipped,
          created_by: by,
        },
        hosts.map((h, i) => ({
          agent_id: h.id,
          hostname: h.hostname,
          position: i,
          wave: canaryCount > 0 && i >= canaryCount ? 2 : 1,
        })),
      );
      await appendAudit(trx, {
        actor: by,
        kind: 'rollout.created',
        subject: id,
        detail: {
          targets: body.targets,
          hosts: total,
          skipped: skipped.length,
          mode: body.mode,
          approval: body.approval,
          canaryHosts: canaryCount,
          maxConcurrency: body.maxConcurrency,
          allowedFailures: allowed,
        },
      });
      return inserted;
    });
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
      hosts: hosts.map((h, i) => ({
        agentId: h.id,
        hostname: h.hostname,
        wave: canaryCount > 0 && i >= canaryCount ? 2 : 1,
      })),
      budget: budgetOf(allowed, 0),
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
