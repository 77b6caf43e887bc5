/**
 * `pve_containers`: the LXC containers each Proxmox VE node's agent reports (docs/proxmox.md).
 * A report is the node's whole list: a container missing from it is marked gone, not deleted, so
 * the runs that named it still say which container it was.
 */
import type { ContainerOptionLayer, Family, OsInfo, SnapshotMode } from '../contract';
import type { ContainerReportEntry } from '../contract/proxmox';
import { jsonb, type Db } from './index';

export interface ContainerRow {
  agent_id: string;
  vmid: number;
  name: string;
  status: 'running' | 'stopped' | 'unknown';
  lock: string | null;
  os: OsInfo | null;
  family: Family | null;
  unsupported: string | null;
  reported_at: Date;
  gone_at: Date | null;
  /** An admin's defaults for this container's runs (null: not set; docs/proxmox.md precedence). */
  default_start_if_stopped: boolean | null;
  default_snapshot: SnapshotMode | null;
}

const containers = (db: Db) => db<ContainerRow>('pve_containers');

/** Replace a node's inventory with what its agent reported now. */
export async function reportInventory(
  db: Db,
  agentId: string,
  entries: readonly ContainerReportEntry[],
): Promise<void> {
  await db.transaction(async (trx) => {
    const now = new Date();
    if (entries.length > 0)
      await containers(trx)
        .insert(
          entries.map((e) => ({
            agent_id: agentId,
            vmid: e.vmid,
            name: e.name,
            status: e.status,
            lock: e.lock,
            os: e.os ? (jsonb(trx, e.os) as unknown as OsInfo) : null,
            family: e.unsupported ? null : (e.os?.family ?? null),
            unsupported: e.unsupported,
            reported_at: now,
            gone_at: null,
          })),
        )
        .onConflict(['agent_id', 'vmid'])
        .merge();
    await containers(trx)
      .where({ agent_id: agentId })
      .whereNull('gone_at')
      .whereNotIn(
        'vmid',
        entries.map((e) => e.vmid),
      )
      .update({ gone_at: now });
  });
}

export function listContainers(db: Db, agentId: string): Promise<ContainerRow[]> {
  return containers(db).where({ agent_id: agentId }).orderBy('vmid');
}

export function getContainer(db: Db, agentId: string, vmid: number): Promise<ContainerRow | undefined> {
  return containers(db).where({ agent_id: agentId, vmid }).first();
}

/** An admin sets a container's run defaults; the inventory reports never touch them. */
export async function setContainerDefaults(
  db: Db,
  agentId: string,
  vmid: number,
  defaults: { startIfStopped: boolean | null; snapshot: SnapshotMode | null },
): Promise<ContainerRow | undefined> {
  const [row] = await containers(db)
    .where({ agent_id: agentId, vmid })
    .update({ default_start_if_stopped: defaults.startIfStopped, default_snapshot: defaults.snapshot })
    .returning('*');
  return row;
}

/** A container's defaults as one layer of the precedence rule. */
export const containerDefaults = (row: ContainerRow | undefined): ContainerOptionLayer => ({
  startIfStopped: row?.default_start_if_stopped ?? null,
  snapshot: row?.default_snapshot ?? null,
});
