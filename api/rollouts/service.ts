import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { requireHooks } from '../hooks/service';
import { ApplicationFailure, WorkflowNotFoundError } from '@temporalio/common';
import { approvalProblem, type SignedApproval } from '../../contract/approval';
import { approverKeys } from '../../db/approver-keys';
import { getWindow } from '../../db/windows';
import { pool } from '../../runtime/pool';
import { approveUpdate } from '../../workflows/messages';
import { ulid } from 'ulid';
import { matchesSelector } from '../../contract/labels';
import { resolveContainerOptions, type ContainerOptions } from '../../contract';
import { containerDefaults, listContainers, type ContainerRow } from '../../db/containers';
import { BUDGET_OUTCOMES } from '../../contract/rollout-policy';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import {
  deleteRollout,
  agentsWithLabels,
  awaitingRunsOf,
  planApprovalsOf,
  recordPlanApproval,
  rolloutHasPlan,
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
import { MAX_ROLLOUT_HOSTS, type ApprovePlanGroupBody, type StartRolloutBody } from './schema';
import { iso } from '../views';

export interface RolloutsDeps {
  db: Db;
  temporal: Client;
  controlQueue: string;
}

/** A resolved target: an agent's own host (vmid 0) or one container of its node, with its options. */
interface Target {
  id: string;
  hostname: string;
  vmid: number;
  options: ContainerOptions | null;
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
  async function resolveTargets(
    targets: StartRolloutBody['targets'],
    body: Pick<StartRolloutBody, 'startIfStopped' | 'snapshot'>,
  ) {
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
    const notAccepted = (a: { status: string }) =>
      a.status === 'pending' ? 'agent is pending acceptance' : `agent is ${a.status}`;
    const hosts: Target[] = wanted
      .filter((a) => a.status === 'accepted')
      .map((a) => ({ id: a.id, hostname: a.hostname, vmid: 0, options: null }));
    const skipped = wanted
      .filter((a) => a.status !== 'accepted')
      .map((a) => ({ agentId: a.id, reason: notAccepted(a) }));
    const containers = await resolveContainers(targets, body, byId);
    return { hosts: [...hosts, ...containers.hosts], skipped: [...skipped, ...containers.skipped] };
  }

  /**
   * Container targets (docs/proxmox.md): each listed container, and every container the
   * `containersOf` nodes report now, once each. A listed container its node never reported (or
   * that left it) is a 400; a reported one that cannot be patched (unsupported, its node not
   * accepted) is recorded as skipped, with why. Options: the rollout's, else the container's
   * default, else off — resolved and recorded now, as a run's own request would be.
   */
  async function resolveContainers(
    targets: StartRolloutBody['targets'],
    body: Pick<StartRolloutBody, 'startIfStopped' | 'snapshot'>,
    agents: Map<string, { id: string; hostname: string; status: string }>,
  ): Promise<{ hosts: Target[]; skipped: { agentId: string; reason: string }[] }> {
    const nodes = [...new Set([...(targets.containers ?? []).map((c) => c.agentId), ...(targets.containersOf ?? [])])];
    const unknown = nodes.filter((id) => !agents.has(id));
    if (unknown.length > 0)
      throw new ApiError('validation_failed', `targets: unknown agent ${unknown.join(', ')}`, 'targets.containers');
    const reported = new Map<string, ContainerRow>();
    for (const node of nodes)
      for (const ct of await listContainers(db, node)) if (!ct.gone_at) reported.set(`${node}/${ct.vmid}`, ct);
    const wanted = new Map<string, ContainerRow>();
    for (const c of targets.containers ?? []) {
      const ct = reported.get(`${c.agentId}/${c.vmid}`);
      if (!ct)
        throw new ApiError(
          'validation_failed',
          `targets.containers: agent ${c.agentId} reports no container ${c.vmid}`,
          'targets.containers',
        );
      wanted.set(`${c.agentId}/${c.vmid}`, ct);
    }
    for (const node of targets.containersOf ?? [])
      for (const [key, ct] of reported) if (ct.agent_id === node) wanted.set(key, ct);
    const hosts: Target[] = [];
    const skipped: { agentId: string; reason: string }[] = [];
    for (const ct of wanted.values()) {
      const node = agents.get(ct.agent_id)!;
      const why =
        node.status !== 'accepted'
          ? `agent is ${node.status === 'pending' ? 'pending acceptance' : node.status}`
          : !ct.family
            ? `unsupported: ${ct.unsupported ?? 'no family detected'}`
            : null;
      if (why) skipped.push({ agentId: ct.agent_id, reason: `container ${ct.vmid}: ${why}` });
      else
        hosts.push({
          id: ct.agent_id,
          hostname: node.hostname,
          vmid: ct.vmid,
          options: resolveContainerOptions({
            run: { startIfStopped: body.startIfStopped ?? null, snapshot: body.snapshot ?? null },
            container: containerDefaults(ct),
          }),
        });
    }
    return { hosts, skipped };
  }

  async function start(body: StartRolloutBody, by: string) {
    const { hosts, skipped } = await resolveTargets(body.targets, body);
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
          approval_scope: body.approvalScope,
          canary: body.canary ?? null,
          canary_count: canaryCount,
          max_concurrency: body.maxConcurrency,
          max_failures: body.maxFailures,
          allowed_failures: allowed,
          reboot: body.reboot ?? null,
          hooks: body.hooks ?? null,
          start_if_stopped: body.startIfStopped ?? null,
          snapshot: body.snapshot ?? null,
          skipped_targets: skipped,
          created_by: by,
        },
        hosts.map((h, i) => ({
          agent_id: h.id,
          hostname: h.hostname,
          position: i,
          wave: canaryCount > 0 && i >= canaryCount ? 2 : 1,
          vmid: h.vmid,
          container_options: h.options,
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
          approvalScope: body.approvalScope,
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
        ...(h.vmid ? { container: h.vmid, containerOptions: h.options } : {}),
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
