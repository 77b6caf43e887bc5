import type { SnapshotMode, WindowApproval } from '../contract';
import type { RebootPolicy, RunHooks } from '../contract/rollout-policy';
import type { CanarySize, FailureBudget } from './rollouts';
import { jsonb, type Db } from './index';

export interface WindowRow {
  id: string; // also names its Temporal Schedule: window.<id>
  name: string;
  /** `containers`: Proxmox VE containers of nodes, each a target of its own (docs/proxmox.md). */
  /** `selector`: every agent it matches when the window fires (issue 12), besides `agentIds`. */
  targets: { agentIds: string[]; selector?: string; containers?: { agentId: string; vmid: number }[] };
  /** `{ cron } | { calendar } | { everySeconds }` as the API validated it; the API parses it back. */
  recurrence: unknown;
  timezone: string;
  duration_seconds: number;
  cutoff_seconds: number;
  approval: WindowApproval;
  lead_seconds: number;
  start_at: Date | null;
  end_at: Date | null;
  paused: boolean;
  note: string;
  /** Runs of this window may not be approved by its creator (who stands as their requester). */
  four_eyes: boolean;
  /** Container targets' options; null: each container's default decides (docs/proxmox.md). */
  start_if_stopped: boolean | null;
  snapshot: SnapshotMode | null;
  /** Issue 12: passed to every run of the window; null: never reboot, no hooks. */
  reboot_policy: RebootPolicy | null;
  hooks: RunHooks | null;
  /** Each firing starts a rollout with this pacing (docs/rollouts.md); null: every host at once. */
  rollout: WindowRollout | null;
  /** How long a rebooted host has to come back; null: DEFAULT_REBOOT_TIMEOUT_SECONDS. */
  reboot_timeout_seconds: number | null;
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

/** A window's rollout, as POST /v1/rollouts takes it (defaults applied). */
export interface WindowRollout {
  canary?: CanarySize;
  maxConcurrency: number;
  maxFailures: FailureBudget;
}

/** The columns an admin sets, on create and on update. */
export type WindowValues = Omit<WindowRow, 'id' | 'created_by' | 'created_at' | 'updated_at'>;

const windows = (db: Db) => db<WindowRow>('maintenance_windows');

const jsonColumns = (db: Db, w: WindowValues) => ({
  ...w,
  targets: jsonb(db, w.targets),
  recurrence: jsonb(db, w.recurrence),
  hooks: w.hooks ? jsonb(db, w.hooks) : null,
  rollout: w.rollout ? jsonb(db, w.rollout) : null,
});

export async function insertWindow(db: Db, id: string, values: WindowValues, createdBy: string): Promise<WindowRow> {
  const [row] = await windows(db)
    .insert({ id, ...jsonColumns(db, values), created_by: createdBy })
    .returning('*');
  return row;
}

export function getWindow(db: Db, id: string): Promise<WindowRow | undefined> {
  return windows(db).where({ id }).first();
}

export function listWindows(db: Db): Promise<WindowRow[]> {
  return windows(db).orderBy('created_at');
}

export async function updateWindow(db: Db, id: string, values: WindowValues): Promise<WindowRow | undefined> {
  const [row] = await windows(db)
    .where({ id })
    .update({ ...jsonColumns(db, values), updated_at: db.fn.now() })
    .returning('*');
  return row;
}

export async function setWindowPaused(db: Db, id: string, paused: boolean): Promise<WindowRow | undefined> {
  const [row] = await windows(db).where({ id }).update({ paused, updated_at: db.fn.now() }).returning('*');
  return row;
}

export async function deleteWindow(db: Db, id: string): Promise<void> {
  await windows(db).where({ id }).delete();
}

/** One firing's targets as resolved when it fired (explicit ids and the selector's matches then). */
export interface WindowFiringRow {
  workflow_run_id: string;
  workflow_id: string;
  window_id: string;
  selector: string | null;
  /** The agents whose hosts this firing runs (accepted ones only). */
  agent_ids: string[];
  skipped_targets: { agentId: string; reason: string }[];
  /** The rollout the firing started, for a window with `rollout`. */
  rollout_id: string | null;
  resolved_at: Date;
}

const firings = (db: Db) => db<WindowFiringRow>('window_firings');

/**
 * Record a firing's resolved targets, keyed by the firing's workflow execution: a retried
 * activity writes the same row again (the resolution the workflow goes on with wins).
 */
export async function recordWindowFiring(
  db: Db,
  f: Omit<WindowFiringRow, 'resolved_at' | 'rollout_id'> & { rollout_id?: string | null },
): Promise<void> {
  await firings(db)
    .insert({
      ...f,
      rollout_id: f.rollout_id ?? null,
      agent_ids: jsonb(db, f.agent_ids) as unknown as string[],
      skipped_targets: jsonb(db, f.skipped_targets) as unknown as WindowFiringRow['skipped_targets'],
    })
    .onConflict('workflow_run_id')
    .merge(['selector', 'agent_ids', 'skipped_targets', 'rollout_id', 'resolved_at']);
}

export function getWindowFiring(db: Db, workflowRunId: string): Promise<WindowFiringRow | undefined> {
  return firings(db).where({ workflow_run_id: workflowRunId }).first();
}

/** A window's most recent firings, newest first. */
export function listWindowFirings(db: Db, windowId: string, limit: number): Promise<WindowFiringRow[]> {
  return firings(db).where({ window_id: windowId }).orderBy('resolved_at', 'desc').limit(limit);
}
