import type { SnapshotMode, WindowApproval } from '../contract';
import type { RebootPolicy, RunHooks } from '../contract/rollout-policy';
import { jsonb, type Db } from './index';

export interface WindowRow {
  id: string; // also names its Temporal Schedule: window.<id>
  name: string;
  /** `containers`: Proxmox VE containers of nodes, each a target of its own (docs/proxmox.md). */
  targets: { agentIds: string[]; containers?: { agentId: string; vmid: number }[] };
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
  created_by: string;
  created_at: Date;
  updated_at: Date;
}

/** The columns an admin sets, on create and on update. */
export type WindowValues = Omit<WindowRow, 'id' | 'created_by' | 'created_at' | 'updated_at'>;

const windows = (db: Db) => db<WindowRow>('maintenance_windows');

const jsonColumns = (db: Db, w: WindowValues) => ({
  ...w,
  targets: jsonb(db, w.targets),
  recurrence: jsonb(db, w.recurrence),
  hooks: w.hooks ? jsonb(db, w.hooks) : null,
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
