/**
 * Proxmox VE containers as targets (docs/proxmox.md): what the node's agent reports of its LXC
 * containers, and what the API shows. Zod: the API and the agent import it, workflows do not.
 */
import { z } from 'zod';
import { Family, freeText, OsInfo, SNAPSHOT_MODES } from './index';

/** A Proxmox VMID: 100 … 999999999 (pve-common's pve-vmid format). */
export const Vmid = z.coerce.number().int().min(100).max(999_999_999);

/** `pct list` states; `pct status` says the same words. */
export const ContainerStatus = z.enum(['running', 'stopped', 'unknown']);

/** One container as the node's agent saw it. */
export const ContainerReportEntry = z.strictObject({
  vmid: Vmid,
  name: freeText(253),
  status: ContainerStatus,
  /** `lock:` of its configuration (backup, migrate, snapshot, …); null when unlocked. */
  lock: freeText(64).min(1).nullable(),
  /** Detected from the container's own /etc/os-release, else from its config's `ostype`. */
  os: OsInfo.nullable(),
  /** Why runs are refused for it (no patch script for its OS, nothing detectable); null when supported. */
  unsupported: freeText(500).min(1).nullable(),
});
export type ContainerReportEntry = z.infer<typeof ContainerReportEntry>;

/** PUT /v1/agents/:id/containers: the node's whole inventory; containers not in it are gone. */
export const ContainerInventory = z.strictObject({
  containers: z.array(ContainerReportEntry).max(10_000),
});
export type ContainerInventory = z.infer<typeof ContainerInventory>;

export const Container = z.object({
  agentId: z.string(),
  vmid: z.number().int(),
  name: z.string(),
  status: ContainerStatus,
  lock: z.string().nullable(),
  os: OsInfo.nullable(),
  family: Family.nullable(),
  unsupported: z.string().nullable(),
  reportedAt: z.string(),
  /** When it left the node's list (destroyed or migrated); null while it is there. */
  goneAt: z.string().nullable(),
  /** An admin's defaults for its runs; null: not set (run > window > container default > off). */
  defaults: z.object({ startIfStopped: z.boolean().nullable(), snapshot: z.enum(SNAPSHOT_MODES).nullable() }),
});
export type Container = z.infer<typeof Container>;

/**
 * PUT /v1/agents/:id/containers/:vmid/defaults: what a container's runs do when neither the run
 * nor its window says. The whole set is replaced; null (or absent) clears a default.
 */
export const ContainerDefaults = z.strictObject({
  startIfStopped: z.boolean().nullable().default(null),
  snapshot: z.enum(SNAPSHOT_MODES).nullable().default(null),
});
export type ContainerDefaults = z.infer<typeof ContainerDefaults>;
