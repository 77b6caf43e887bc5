import { agentTaskQueue, type Agent, type AgentRegistration } from '../../contract';
import type { Db } from '../../db';
import { freeAgentId, getAgent, insertAgent, listAgents, touchAgent, type AgentRow } from '../../db/agents';
import { newAgentToken } from '../auth';
import { ApiError, notFound } from '../errors';

export interface AgentsDeps {
  db: Db;
}

function toAgent(row: AgentRow): Agent {
  return {
    id: row.id,
    hostname: row.hostname,
    os: { id: row.os_id, versionId: row.os_version, prettyName: row.os_pretty_name, family: row.family },
    family: row.family,
    taskQueue: agentTaskQueue(row.id),
    createdAt: row.created_at.toISOString(),
    lastSeenAt: row.last_seen_at ? row.last_seen_at.toISOString() : null,
  };
}

/** An agent id people can read: the host name as a slug, suffixed when taken. */
function slug(hostname: string): string {
  const s = hostname
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 50);
  return s || 'host';
}

export function agentsService({ db }: AgentsDeps) {
  async function register(reg: AgentRegistration): Promise<{ agent: Agent; token: string }> {
    const base = slug(reg.hostname);
    const { token, hash } = newAgentToken();
    // Registrations of one name at the same moment can pick the same id: the loser asks again.
    for (let attempt = 0; attempt < 5; attempt++) {
      const row = await insertAgent(db, {
        id: await freeAgentId(db, base),
        hostname: reg.hostname,
        os_id: reg.os.id,
        os_version: reg.os.versionId,
        os_pretty_name: reg.os.prettyName,
        family: reg.os.family,
        package_manager: reg.os.family,
        token_hash: hash,
        status: 'accepted', // until enrolment tokens decide it (issue 13)
      });
      if (row) return { agent: toAgent(row), token };
    }
    throw new ApiError('conflict', `too many registrations of ${reg.hostname} at once; try again`);
  }

  async function list(): Promise<Agent[]> {
    return (await listAgents(db)).map(toAgent);
  }

  /** `seen`: the agent itself is asking, which is its liveness signal. */
  async function get(id: string, opts: { seen?: boolean } = {}): Promise<Agent> {
    if (opts.seen) await touchAgent(db, id);
    const row = await getAgent(db, id);
    if (!row) throw notFound(`agent ${id}`);
    return toAgent(row);
  }

  return { register, list, get };
}
export type AgentsService = ReturnType<typeof agentsService>;
