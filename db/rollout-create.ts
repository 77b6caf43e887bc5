import { ulid } from 'ulid';
import {
  resolveContainerOptions,
  type ApprovalPolicy,
  type ContainerOptions,
  type RunMode,
  type RunWindow,
  type SnapshotMode,
} from '../contract';
import { matchesSelector } from '../contract/labels';
import { MAX_ROLLOUT_HOSTS, type ApprovalScope, type RebootPolicy, type RunHooks } from '../contract/rollout-policy';
import { containerDefaults, listContainers, type ContainerRow } from './containers';
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
  /** Proxmox VE containers (docs/proxmox.md): listed, or every container the nodes report now. */
  containers?: { agentId: string; vmid: number }[];
  containersOf?: string[];
}

/**
 * What the request says of its container targets, and as which layer of the precedence rule
 * (contract resolveContainerOptions): a rollout's say counts as each run's own request, a window's
 * as the window's. Null or absent: each container's default decides, else off.
 */
export interface ContainerAsk {
  layer: 'run' | 'window';
  startIfStopped?: boolean | null;
  snapshot?: SnapshotMode | null;
}

export type SkippedTarget = { agentId: string; reason: string };
/** A host (vmid 0) or one container of the agent's node, with the options its run gets. */
export type ResolvedHost = { id: string; hostname: string; vmid: number; options: ContainerOptions | null };

const notAccepted = (status: string) => (status === 'pending' ? 'agent is pending acceptance' : `agent is ${status}`);

/**
 * The hosts targets name now: the named agents, then every agent the selector matches (by id),
 * once each, then the containers. Only accepted agents run; pending, revoked and unknown ones are
 * skipped, with why. A named agent that does not exist is also in `unknown`, a container node
 * that does not exist in `unknownNodes`, a listed container its node does not report in
 * `missingContainers` (the API refuses each; a window firing skips them: they went away after the
 * window was made).
 */
export async function resolveTargets(
  db: Db,
  targets: TargetSpec,
  ask: ContainerAsk = { layer: 'run' },
): Promise<{
  hosts: ResolvedHost[];
  skipped: SkippedTarget[];
  unknown: string[];
  unknownNodes: string[];
  missingContainers: { agentId: string; vmid: number }[];
}> {
  const named = targets.agentIds ?? [];
  const rows = await agentsWithLabels(db);
  const byId = new Map(rows.map((r) => [r.id, r]));
  const unknown = named.filter((id) => !byId.has(id));
  const selected = targets.selector ? rows.filter((r) => matchesSelector(r.labels ?? {}, targets.selector!)) : [];
  const wanted = [...new Set([...named.filter((id) => byId.has(id)), ...selected.map((r) => r.id)])].map((id) =>
    byId.get(id)!,
  );
  const containers = await resolveContainers(db, targets, ask, byId);
  return {
    hosts: [
      ...wanted
        .filter((a) => a.status === 'accepted')
        .map((a) => ({ id: a.id, hostname: a.hostname, vmid: 0, options: null })),
      ...containers.hosts,
    ],
    skipped: [
      ...unknown.map((agentId) => ({ agentId, reason: 'unknown agent' })),
      ...wanted.filter((a) => a.status !== 'accepted').map((a) => ({ agentId: a.id, reason: notAccepted(a.status) })),
      ...containers.skipped,
    ],
    unknown,
    unknownNodes: containers.unknownNodes,
    missingContainers: containers.missing,
  };
}

/**
 * Container targets (docs/proxmox.md), after the hosts: each listed container, then every
 * container the `containersOf` nodes report now, once each (not ones that left their node). A
 * container runs when its node is accepted and reports it, supported; otherwise it is skipped,
 * with why. Options: the request's say (as `ask.layer`), else the container's default, else off —
 * resolved now and recorded.
 */
async function resolveContainers(
  db: Db,
  targets: TargetSpec,
  ask: ContainerAsk,
  agents: Map<string, { id: string; hostname: string; status: string }>,
): Promise<{
  hosts: ResolvedHost[];
  skipped: SkippedTarget[];
  unknownNodes: string[];
  missing: { agentId: string; vmid: number }[];
}> {
  const nodes = [...new Set([...(targets.containers ?? []).map((c) => c.agentId), ...(targets.containersOf ?? [])])];
  const unknownNodes = nodes.filter((id) => !agents.has(id));
  const reported = new Map<string, ContainerRow>();
  for (const node of nodes.filter((id) => agents.has(id)))
    for (const ct of await listContainers(db, node)) if (!ct.gone_at) reported.set(`${node}/${ct.vmid}`, ct);
  const wanted = [
    ...(targets.containers ?? []),
    ...(targets.containersOf ?? []).flatMap((node) =>
      [...reported.values()].filter((ct) => ct.agent_id === node).map((ct) => ({ agentId: node, vmid: ct.vmid })),
    ),
  ].filter((c, i, all) => all.findIndex((o) => o.agentId === c.agentId && o.vmid === c.vmid) === i);
  const hosts: ResolvedHost[] = [];
  const skipped: SkippedTarget[] = [];
  const missing: { agentId: string; vmid: number }[] = [];
  for (const { agentId, vmid } of wanted) {
    const node = agents.get(agentId);
    const ct = reported.get(`${agentId}/${vmid}`);
    if (node?.status === 'accepted' && !ct) missing.push({ agentId, vmid });
    const why = !node
      ? `container ${vmid}: unknown agent`
      : node.status !== 'accepted'
        ? `container ${vmid}: ${notAccepted(node.status)}`
        : !ct
          ? `container ${vmid} is not on the node`
          : !ct.family
            ? `container ${vmid} is unsupported: ${ct.unsupported ?? 'no family'}`
            : null;
    if (why) skipped.push({ agentId, reason: why });
    else
      hosts.push({
        id: agentId,
        hostname: node!.hostname,
        vmid,
        options: resolveContainerOptions({
          [ask.layer]: { startIfStopped: ask.startIfStopped ?? null, snapshot: ask.snapshot ?? null },
          container: containerDefaults(ct),
        }),
      });
  }
  return { hosts, skipped, unknownNodes, missing };
}

export interface RolloutSpec {
  name: string;
  targets: TargetSpec;
  mode: RunMode;
  approval: ApprovalPolicy;
  /** `plan-group`: one signed approval per plan hash for the whole rollout (default per-run). */
  approvalScope?: ApprovalScope;
  canary?: CanarySize;
  maxConcurrency: number;
  maxFailures: FailureBudget;
  reboot?: RebootPolicy;
  hooks?: RunHooks;
  rebootTimeoutSeconds?: number;
  /** Container targets: what the rollout asks (startIfStopped, snapshot). */
  startIfStopped?: boolean;
  snapshot?: SnapshotMode;
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
  const resolved = await resolveTargets(db, spec.targets, {
    layer: 'run',
    startIfStopped: spec.startIfStopped,
    snapshot: spec.snapshot,
  });
  if (resolved.unknown.length > 0 && unknownAgents === 'refuse')
    return {
      ok: false,
      field: 'targets.agentIds',
      message: `targets.agentIds: unknown agent ${resolved.unknown.join(', ')}`,
      skipped: [],
    };
  if (resolved.unknownNodes.length > 0 && unknownAgents === 'refuse')
    return {
      ok: false,
      field: 'targets.containers',
      message: `targets.containers: unknown agent ${resolved.unknownNodes.join(', ')}`,
      skipped: [],
    };
  if (resolved.missingContainers.length > 0 && unknownAgents === 'refuse')
    return {
      ok: false,
      field: 'targets.containers',
      message: `targets.containers: ${resolved.missingContainers
        .map((c) => `agent ${c.agentId} reports no container ${c.vmid}`)
        .join('; ')}`,
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
        approval_scope: spec.approvalScope ?? 'per-run',
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
        start_if_stopped: spec.startIfStopped ?? null,
        snapshot: spec.snapshot ?? null,
        created_by: spec.createdBy,
      },
      waved.map((h, i) => ({
        agent_id: h.id,
        hostname: h.hostname,
        position: i,
        wave: h.wave,
        vmid: h.vmid,
        container_options: h.options,
      })),
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
        ...(spec.approvalScope === 'plan-group' ? { approvalScope: spec.approvalScope } : {}),
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
