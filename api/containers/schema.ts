import { z } from 'zod';
import { AgentId } from '../../contract';

export { ContainerInventory } from '../../contract/proxmox';
export const NodeParams = z.object({ id: AgentId });
