import { z } from 'zod';
import { AgentId } from '../../contract';
import { Vmid } from '../../contract/proxmox';

export { ContainerDefaults, ContainerInventory } from '../../contract/proxmox';
export const NodeParams = z.object({ id: AgentId });
export const ContainerParams = z.object({ id: AgentId, vmid: Vmid });
