import type { ApprovalPolicy, RunMode, RunOutcome, RunPhase, RunWindow } from '../contract';
import type { RebootPolicy, RunHooks } from '../contract/rollout-policy';
import { appendAudit } from './audit';
import { jsonb, type Db } from './index';

export const ROLLOUT_STATES = ['running', 'paused', 'halted', 'aborted', 'completed'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

export type CanarySize = { count: number } | { percent: number };
export type FailureBudget = { count: number } | { percent: number };

export interface RolloutRow {
  id: string;
  name: string;
  targets: { agentIds?: string[]; selector?: string };
  mode: RunMode;
  approval: ApprovalPolicy;
  canary: CanarySize | null;
  canary_count: number;
  max_concurrency: number;
  max_failures: FailureBudget;
  allowed_failures: number;
  reboot: RebootPolicy | null;
  hooks: RunHooks | null;
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
  run_id: string | null;
  started_at: Date | null;
}

/** A target with its run's progress, as GET /v1/rollouts/:id shows it. */
export type RolloutHostRow = RolloutTargetRow & {
  phase: RunPhase | null;
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
    await targets(db).insert(hosts.slice(i, i + 1000).map((h) => ({ ...h, rollout_id: r.id })));
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
    .select('t.*', 'r.phase', 'r.outcome', 'r.finished_at');
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
  hosts: readonly { agentId: string; runId: string }[],
): Promise<void> {
  for (const h of hosts)
    await targets(db)
      .where({ rollout_id: id, agent_id: h.agentId })
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
