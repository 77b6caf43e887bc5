import type { Container, ContainerInventory } from '../../contract/proxmox';
import type { Db } from '../../db';
import { getAgent } from '../../db/agents';
import { listContainers, reportInventory, type ContainerRow } from '../../db/containers';
import { notFound } from '../errors';

export interface ContainersDeps {
  db: Db;
}

function toContainer(r: ContainerRow): Container {
  return {
    agentId: r.agent_id,
    vmid: r.vmid,
    name: r.name,
    status: r.status,
    lock: r.lock,
    os: r.os,
    family: r.family,
    unsupported: r.unsupported,
    reportedAt: r.reported_at.toISOString(),
    goneAt: r.gone_at ? r.gone_at.toISOString() : null,
  };
}

/** A Proxmox VE node's containers: reported by its own agent, read by people (docs/proxmox.md). */
export function containersService({ db }: ContainersDeps) {
  async function list(agentId: string): Promise<Container[]> {
    if (!(await getAgent(db, agentId))) throw notFound(`agent ${agentId}`);
    return (await listContainers(db, agentId)).map(toContainer);
  }

  async function report(agentId: string, inventory: ContainerInventory): Promise<Container[]> {
    await reportInventory(db, agentId, inventory.containers);
    return list(agentId);
  }

  return { list, report };
}
export type ContainersService = ReturnType<typeof containersService>;
