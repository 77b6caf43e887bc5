import type { Knex } from 'knex';
import { agentTaskQueue, type Agent, type AgentRegistration, type Family } from '../../contract';
import { newAgentToken } from '../auth';

interface AgentRow {
  id: string;
  hostname: string;
  os_id: string;
  os_version: string;
  os_pretty_name: string;
  family: Family;
  package_manager: string;
  created_at: Date;
  last_seen_at: Date | null;
}

export function toAgent(row: AgentRow): Agent {
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

export async function registerAgent(db: Knex, reg: AgentRegistration): Promise<{ agent: Agent; token: string }> {
  const base = slug(reg.hostname);
  const { token, hash } = newAgentToken();
  for (let n = 1; n < 1000; n++) {
    const id = n === 1 ? base : `${base}-${n}`;
    const [row] = await db('agents')
      .insert({
        id,
        hostname: reg.hostname,
        os_id: reg.os.id,
        os_version: reg.os.versionId,
        os_pretty_name: reg.os.prettyName,
        family: reg.os.family,
        package_manager: reg.os.family,
        token_hash: hash,
        last_seen_at: db.fn.now(),
      })
      .onConflict('id')
      .ignore()
      .returning('*');
    if (row) return { agent: toAgent(row as AgentRow), token };
  }
  throw new Error(`no free agent id for ${reg.hostname}`);
}

export async function listAgents(db: Knex): Promise<Agent[]> {
  const rows = await db('agents').select('*').orderBy('id');
  return rows.map((r: AgentRow) => toAgent(r));
}

export async function getAgent(db: Knex, id: string): Promise<Agent | null> {
  const row = await db('agents').where({ id }).first();
  return row ? toAgent(row as AgentRow) : null;
}

export async function touchAgent(db: Knex, id: string): Promise<void> {
  await db('agents').where({ id }).update({ last_seen_at: db.fn.now() });
}
