import type { Container, ContainerDefaults, ContainerInventory } from '../../contract/proxmox';
import type { Db } from '../../db';
import { getAgent } from '../../db/agents';
import { appendAudit } from '../../db/audit';
import { listContainers, reportInventory, setContainerDefaults, type ContainerRow } from '../../db/containers';
import { notFound } from '../errors';
import { iso } from '../views';

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
    goneAt: iso(r.gone_at),
    defaults: { startIfStopped: r.default_start_if_stopped, snapshot: r.default_snapshot },
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

  /** The container must have been reported by its node; a gone one keeps its defaults should it return. */
  async function setDefaults(agentId: string, vmid: number, defaults: ContainerDefaults, by: string) {
    if (!(await getAgent(db, agentId))) throw notFound(`agent ${agentId}`);
    return db.transaction(async (trx) => {
      const row = await setContainerDefaults(trx, agentId, vmid, defaults);
      if (!row) throw notFound(`container ${vmid} of agent ${agentId}`);
      await appendAudit(trx, {
        actor: by,
        kind: 'container.defaults-set',
        subject: `${agentId}/${vmid}`,
        detail: { defaults },
      });
      return toContainer(row);
    });
  }

  return { list, report, setDefaults };
}
export type ContainersService = ReturnType<typeof containersService>;
