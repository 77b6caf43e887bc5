import { ulid } from 'ulid';
import type { ApprovalPolicy, RunMode, RunWindow } from '../contract';
import { matchesSelector } from '../contract/labels';
import { MAX_ROLLOUT_HOSTS, type RebootPolicy, type RunHooks } from '../contract/rollout-policy';
import { appendAudit } from './audit';
import type { Db } from './index';
import { agentsWithLabels, insertRollout, type CanarySize, type FailureBudget, type RolloutRow } from './rollouts';

/**
 * Starting a rollout, the one way (issue 12, docs/rollouts.md): POST /v1/rollouts and a window
 * firing that starts a rollout both call createRollout, so their targets, canary and budget are
 * resolved by the same rules.
 */

export interface TargetSpec {
  agentIds?: string[];
  selector?: string;
}

export type SkippedTarget = { agentId: string; reason: string };
export type ResolvedHost = { id: string; hostname: string };

const notAccepted = (status: string) => (status === 'pending' ? 'agent is pending acceptance' : `agent is ${status}`);

/**
 * The hosts targets name now: the named agents, then every agent the selector matches (by id),
 * once each. Only accepted agents run; pending, revoked and unknown ones are skipped, with why. A
 * named agent that does not exist is also in `unknown` (the API refuses it; a window firing skips
 * it: the agent was deleted after the window was made).
 */
export async function resolveTargets(
  db: Db,
  targets: TargetSpec,
): Promise<{ hosts: ResolvedHost[]; skipped: SkippedTarget[]; unknown: string[] }> {
  const named = targets.agentIds ?? [];
  const rows = await agentsWithLabels(db);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const unknown = named.filter((id) => !byId.has(id));
  const selected = targets.selector ? rows.filter((r) => matchesSelector(r.labels ?? {}, targets.selector!)) : [];
  const wanted = [...new Set([...named.filter((id) => byId.has(id)), ...selected.map((r) => r.id)])].map((id) =>
    byId.get(id)!,
  );
  return {
    hosts: wanted.filter((a) => a.status === 'accepted').map((a) => ({ id: a.id, hostname: a.hostname })),
    skipped: [
      ...unknown.map((agentId) => ({ agentId, reason: 'unknown agent' })),
      ...wanted.filter((a) => a.status !== 'accepted').map((a) => ({ agentId: a.id, reason: notAccepted(a.status) })),
    ],
    unknown,
  };
}

export interface RolloutSpec {
  name: string;
  targets: TargetSpec;
  mode: RunMode;
  approval: ApprovalPolicy;
  canary?: CanarySize;
  maxConcurrency: number;
  maxFailures: FailureBudget;
  reboot?: RebootPolicy;
  hooks?: RunHooks;
  rebootTimeoutSeconds?: number;
  /** Set when a window firing starts the rollout: its runs are bound to the window. */
  window?: RunWindow;
  /** Who asked: a user, or `window:<id>`. */
  createdBy: string;
}

export type CreatedRollout = {
  ok: true;
  row: RolloutRow;
  hosts: (ResolvedHost & { wave: number })[];
  skipped: SkippedTarget[];
  allowedFailures: number;
};
/** Why no rollout was made; `field` is the request field to blame. */
export type RolloutRefused = { ok: false; field: string; message: string; skipped: SkippedTarget[] };

/** A percentage canary rounds up (5% of 10 hosts is 1 host, never 0), capped at the hosts there are. */
export const canaryCountOf = (canary: CanarySize | undefined, total: number) =>
  !canary
    ? 0
    : Math.min(total, 'count' in canary ? canary.count : Math.max(1, Math.ceil((canary.percent * total) / 100)));

/** A percentage budget rounds down (10% of 5 hosts tolerates none). */
export const allowedFailuresOf = (budget: FailureBudget, total: number) =>
  'count' in budget ? budget.count : Math.floor((budget.percent * total) / 100);

/**
 * Resolve the targets now, size the canary and the budget, write the rollout with its targets and
 * audit it (`rollout.created`) in one transaction. Starting its workflow is the caller's (the API
 * starts it on Temporal, a window firing as its child). `unknownAgents`: what a named agent that
 * does not exist does — refuse the rollout, or skip it with a reason.
 */
export async function createRollout(
  db: Db,
  spec: RolloutSpec,
  unknownAgents: 'refuse' | 'skip',
): Promise<CreatedRollout | RolloutRefused> {
  const resolved = await resolveTargets(db, spec.targets);
  if (resolved.unknown.length > 0 && unknownAgents === 'refuse')
    return {
      ok: false,
      field: 'targets.agentIds',
      message: `targets.agentIds: unknown agent ${resolved.unknown.join(', ')}`,
      skipped: [],
    };
  const { hosts, skipped } = resolved;
  if (hosts.length === 0)
    return {
      ok: false,
      field: 'targets',
      message: `targets: no accepted agent matches${skipped.length ? ` (skipped: ${skipped.map((s) => `${s.agentId}: ${s.reason}`).join('; ')})` : ''}`,
      skipped,
    };
  if (hosts.length > MAX_ROLLOUT_HOSTS)
    return { ok: false, field: 'targets', message: `targets: at most ${MAX_ROLLOUT_HOSTS} hosts a rollout`, skipped };
  const total = hosts.length;
  const canaryCount = canaryCountOf(spec.canary, total);
  const allowed = allowedFailuresOf(spec.maxFailures, total);
  const waved = hosts.map((h, i) => ({ ...h, wave: canaryCount > 0 && i >= canaryCount ? 2 : 1 }));
  const id = `rol-${ulid().toLowerCase()}`;
  const row = await db.transaction(async (trx) => {
    const inserted = await insertRollout(
      trx,
      {
        id,
        name: spec.name,
        targets: spec.targets,
        mode: spec.mode,
        approval: spec.approval,
        canary: spec.canary ?? null,
        canary_count: canaryCount,
        max_concurrency: spec.maxConcurrency,
        max_failures: spec.maxFailures,
        allowed_failures: allowed,
        reboot: spec.reboot ?? null,
        hooks: spec.hooks ?? null,
        skipped_targets: skipped,
        window: spec.window ?? null,
        reboot_timeout_seconds: spec.rebootTimeoutSeconds ?? null,
        created_by: spec.createdBy,
      },
      waved.map((h, i) => ({ agent_id: h.id, hostname: h.hostname, position: i, wave: h.wave })),
    );
    await appendAudit(trx, {
      actor: spec.createdBy,
      kind: 'rollout.created',
      subject: id,
      detail: {
        targets: spec.targets,
        hosts: total,
        skipped: skipped.length,
        mode: spec.mode,
        approval: spec.approval,
        canaryHosts: canaryCount,
        maxConcurrency: spec.maxConcurrency,
        allowedFailures: allowed,
        ...(spec.window ? { windowId: spec.window.windowId } : {}),
      },
    });
    return inserted;
  });
  return { ok: true, row, hosts: waved, skipped, allowedFailures: allowed };
}
