import type {
  ApprovalPolicy,
  ContainerOptions,
  RunMode,
  RunOutcome,
  RunPhase,
  RunWindow,
  SnapshotMode,
} from '../contract';
import type { SignedApproval } from '../contract/approval';
import type { ApprovalScope, RebootPolicy, RunHooks } from '../contract/rollout-policy';
import { appendAudit } from './audit';
import { jsonb, type Db } from './index';

export const ROLLOUT_STATES = ['running', 'paused', 'halted', 'aborted', 'completed'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export type CanarySize = { count: number } | { percent: number };
export type FailureBudget = { count: number } | { percent: number };

export interface RolloutRow {
  id: string;
  name: string;
  targets: {
    agentIds?: string[];
    selector?: string;
    containers?: { agentId: string; vmid: number }[];
    containersOf?: string[];
  };
  mode: RunMode;
  approval: ApprovalPolicy;
  /** `plan-group`: one signed approval per plan hash covers the rollout's hosts with that plan. */
  approval_scope: ApprovalScope;
  canary: CanarySize | null;
  canary_count: number;
  max_concurrency: number;
  max_failures: FailureBudget;
  allowed_failures: number;
  reboot: RebootPolicy | null;
  hooks: RunHooks | null;
  /** What the rollout asked of its container targets; null: each container's default decides. */
  start_if_stopped: boolean | null;
  snapshot: SnapshotMode | null;
  skipped_targets: { agentId: string; reason: string }[];
  /** The window firing that started the rollout (epoch ms); null: started through the API. */
  window: RunWindow | null;
  /** How long a rebooted host has to come back; null: DEFAULT_REBOOT_TIMEOUT_SECONDS. */
  reboot_timeout_seconds: number | null;
  state: RolloutState;
  failures: number;
  state_reason: string | null;
  workflow_run_id: string | null;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export interface RolloutTargetRow {
  rollout_id: string;
  agent_id: string;
  hostname: string;
  position: number;
  wave: number;
  /** 0: the agent's own host; else a container of the agent's Proxmox VE node (docs/proxmox.md). */
  vmid: number;
  /** A container target's options, resolved at start (run > container default > off). */
  container_options: ContainerOptions | null;
  run_id: string | null;
  started_at: Date | null;
}

/** A target with its run's progress, as GET /v1/rollouts/:id shows it. */
export type RolloutHostRow = RolloutTargetRow & {
  phase: RunPhase | null;
  plan_hash: string | null;
  outcome: RunOutcome | null;
  finished_at: Date | null;
};

export type NewRollout = Omit<
  RolloutRow,
  'state' | 'failures' | 'state_reason' | 'workflow_run_id' | 'created_at' | 'updated_at' | 'finished_at'
>;

const rollouts = (db: Db) => db<RolloutRow>('rollouts');
const targets = (db: Db) => db<RolloutTargetRow>('rollout_targets');

/** The rollout and its targets in one go (call inside the transaction that audits it). */
export async function insertRollout(
  db: Db,
  r: NewRollout,
  hosts: Omit<RolloutTargetRow, 'rollout_id' | 'run_id' | 'started_at'>[],
): Promise<RolloutRow> {
  const [row] = await rollouts(db)
    .insert({
      ...r,
      targets: jsonb(db, r.targets),
      canary: r.canary ? jsonb(db, r.canary) : null,
      max_failures: jsonb(db, r.max_failures),
      hooks: r.hooks ? jsonb(db, r.hooks) : null,
      skipped_targets: jsonb(db, r.skipped_targets),
      window: r.window ? jsonb(db, r.window) : null,
    })
    .returning('*');
  // In chunks: a 5,000-host rollout stays under PostgreSQL's bind-parameter limit.
  for (let i = 0; i < hosts.length; i += 1000)
    await targets(db).insert(
      hosts.slice(i, i + 1000).map((h) => ({
        ...h,
        container_options: h.container_options ? jsonb(db, h.container_options) : null,
        rollout_id: r.id,
      })),
    );
  return row;
}

export async function deleteRollout(db: Db, id: string): Promise<void> {
  await rollouts(db).where({ id }).delete();
}

export function getRollout(db: Db, id: string): Promise<RolloutRow | undefined> {
  return rollouts(db).where({ id }).first();
}

export function listRollouts(db: Db, limit = 200): Promise<RolloutRow[]> {
  return rollouts(db).orderBy('created_at', 'desc').limit(limit);
}

export function rolloutTargets(db: Db, id: string): Promise<RolloutTargetRow[]> {
  return targets(db).where({ rollout_id: id }).orderBy('position');
}

/** Each target with its run's phase, outcome and end (the run's own record), in rollout order. */
export function rolloutHosts(db: Db, id: string): Promise<RolloutHostRow[]> {
  return db('rollout_targets as t')
    .leftJoin('patch_runs as r', 'r.id', 't.run_id')
    .where('t.rollout_id', id)
    .orderBy('t.position')
    .select('t.*', 'r.phase', 'r.plan_hash', 'r.outcome', 'r.finished_at');
}

/** Outcome counts per rollout, for the list (one query for the page). */
export async function rolloutOutcomeCounts(
  db: Db,
  ids: readonly string[],
): Promise<{ rollout_id: string; outcome: RunOutcome | null; started: boolean; n: number }[]> {
  if (ids.length === 0) return [];
  const rows = await db('rollout_targets as t')
    .leftJoin('patch_runs as r', 'r.id', 't.run_id')
    .whereIn('t.rollout_id', ids)
    .groupBy('t.rollout_id', 'r.outcome', db.raw('t.run_id is not null'))
    .select('t.rollout_id', 'r.outcome', db.raw('t.run_id is not null as started'), db.raw('count(*)::int as n'));
  return rows as { rollout_id: string; outcome: RunOutcome | null; started: boolean; n: number }[];
}

/**
 * The first workflow execution to claim a rollout owns it; any other (started around the API,
 * or a second start) is refused. Returns false when another execution owns it.
 */
export async function claimRollout(db: Db, id: string, workflowRunId: string): Promise<RolloutRow | undefined> {
  const [row] = await rollouts(db)
    .where({ id })
    .whereRaw('(workflow_run_id is null or workflow_run_id = ?)', [workflowRunId])
    .update({ workflow_run_id: workflowRunId })
    .returning('*');
  return row;
}

/** Mark targets as started with their run ids, now; only by the owning execution. */
export async function markTargetsStarted(
  db: Db,
  id: string,
  hosts: readonly { agentId: string; vmid?: number; runId: string }[],
): Promise<void> {
  for (const h of hosts)
    await targets(db)
      .where({ rollout_id: id, agent_id: h.agentId, vmid: h.vmid ?? 0 })
      .whereNull('run_id')
      .update({ run_id: h.runId, started_at: db.fn.now() as unknown as Date });
}

/** Every agent with its status and labels, for resolving a rollout's targets (by id order). */
export function agentsWithLabels(
  db: Db,
): Promise<{ id: string; hostname: string; status: string; labels: Record<string, string> | null }[]> {
  return db<{ id: string; hostname: string; status: string; labels: Record<string, string> | null }>('agents')
    .select('id', 'hostname', 'status', 'labels')
    .orderBy('id');
}

/** Record a state change and audit it in the same transaction. */
export async function setRolloutState(
  db: Db,
  input: {
    rolloutId: string;
    workflowRunId: string;
    state: RolloutState;
    failures: number;
    reason: string | null;
    by: string;
    seq: number;
  },
): Promise<boolean> {
  return db.transaction(async (trx) => {
    const ended = input.state === 'halted' || input.state === 'aborted' || input.state === 'completed';
    const n = await rollouts(trx)
      .where({ id: input.rolloutId, workflow_run_id: input.workflowRunId })
      .update({
        state: input.state,
        failures: input.failures,
        state_reason: input.reason,
        updated_at: trx.fn.now() as unknown as Date,
        ...(ended ? { finished_at: trx.fn.now() as unknown as Date } : {}),
      });
    if (n === 0) return false;
    await appendAudit(trx, {
      actor: input.by,
      kind: `rollout.${input.state}`,
      subject: input.rolloutId,
      detail: { failures: input.failures, reason: input.reason },
      dedupeKey: `rollout.state:${input.rolloutId}:${input.seq}`,
    });
    return true;
  });
}

/** A plan hash a person approved for a whole plan-group rollout, with the statement they signed. */
export interface PlanApprovalRow {
  rollout_id: string;
  plan_hash: string;
  approval: SignedApproval;
  approved_by: string;
  created_at: Date;
}

const planApprovals = (db: Db) => db<PlanApprovalRow>('rollout_plan_approvals');

/** Record a plan-group approval (a newer one of the same hash replaces the older) and audit it. */
export async function recordPlanApproval(db: Db, approval: SignedApproval, rolloutId: string): Promise<void> {
  await db.transaction(async (trx) => {
    await planApprovals(trx)
      .insert({
        rollout_id: rolloutId,
        plan_hash: approval.planHash,
        approval: jsonb(trx, approval) as unknown as SignedApproval,
        approved_by: approval.by,
      })
      .onConflict(['rollout_id', 'plan_hash'])
      .merge(['approval', 'approved_by', 'created_at']);
    await appendAudit(trx, {
      actor: approval.by,
      kind: 'rollout.plan-approved',
      subject: rolloutId,
      detail: { planHash: approval.planHash, keyId: approval.keyId, at: approval.at },
    });
  });
}

export function planApprovalsOf(db: Db, rolloutId: string): Promise<PlanApprovalRow[]> {
  return planApprovals(db).where({ rollout_id: rolloutId }).orderBy('created_at');
}

/**
 * The plan-group approval that may cover a run's plan: the run's rollout is read from the run's
 * own row (requested by `rollout:<id>`) and must be plan-group; null when there is none (yet).
 */
export async function planApprovalForRun(db: Db, runId: string, planHash: string): Promise<SignedApproval | null> {
  const { rows } = await db.raw<{ rows: { approval: SignedApproval }[] }>(
    `select a.approval
       from patch_runs r
       join rollouts ro on 'rollout:' || ro.id = r.requested_by
       join rollout_plan_approvals a on a.rollout_id = ro.id and a.plan_hash = ?
      where r.id = ? and ro.approval_scope = 'plan-group'`,
    [planHash, runId],
  );
  return rows[0]?.approval ?? null;
}

/** The rollout's runs waiting for a person's approval of exactly this plan (to deliver a group approval to). */
export async function awaitingRunsOf(db: Db, rolloutId: string, planHash: string): Promise<string[]> {
  const rows = await db('patch_runs')
    .where({ requested_by: `rollout:${rolloutId}`, phase: 'awaiting-approval', plan_hash: planHash })
    .whereNull('outcome')
    .select('id');
  return rows.map((r: { id: string }) => r.id);
}

/** Whether any run of the rollout has planned this hash (a group approval of a plan nobody has is refused). */
export async function rolloutHasPlan(db: Db, rolloutId: string, planHash: string): Promise<boolean> {
  const row: unknown = await db('patch_runs')
    .where({ requested_by: `rollout:${rolloutId}`, plan_hash: planHash })
    .first('id');
  return row !== undefined;
}

/**
 * The plan group a run belongs to, from its own row: its rollout when that rollout approves by
 * plan group, with when it was created (a group approval signed before is stale) and who may not
 * give its group approval (the rollout's creator; a window's rollout: the window's creator too).
 */
export async function planGroupOfRun(
  db: Db,
  runId: string,
): Promise<{ rolloutId: string; since: number; mayNotApprove: string[] } | null> {
  const { rows } = await db.raw<{
    rows: { id: string; created_at: Date; created_by: string; window_by: string | null }[];
  }>(
    `select ro.id, ro.created_at, ro.created_by, w.created_by as window_by
       from patch_runs r
       join rollouts ro on 'rollout:' || ro.id = r.requested_by
       left join maintenance_windows w on 'window:' || w.id = ro.created_by
      where r.id = ? and ro.approval_scope = 'plan-group'`,
    [runId],
  );
  const row = rows[0];
  if (!row) return null;
  return {
    rolloutId: row.id,
    since: row.created_at.getTime(),
    mayNotApprove: [row.created_by, ...(row.window_by ? [row.window_by] : [])],
  };
}
