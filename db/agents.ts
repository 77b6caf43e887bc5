import type { Family } from '../contract';
import type { Db } from './index';

export interface AgentRow {
  id: string;
  hostname: string;
  os_id: string;
  os_version: string;
  os_pretty_name: string;
  family: Family;
  package_manager: string;
  /** SHA-256 of the agent's bearer token; the token itself is never stored. */
  token_hash: string;
  created_at: Date;
  last_seen_at: Date | null;
}

export type NewAgent = Omit<AgentRow, 'created_at' | 'last_seen_at'>;

const agents = (db: Db) => db<AgentRow>('agents');

/** Insert an agent seen now; undefined when the id is taken. */
export async function insertAgent(db: Db, agent: NewAgent): Promise<AgentRow | undefined> {
  const [row] = await agents(db)
    .insert({ ...agent, last_seen_at: db.fn.now() })
    .onConflict('id')
    .ignore()
    .returning('*');
  return row;
}

export function listAgents(db: Db): Promise<AgentRow[]> {
  return agents(db).select('*').orderBy('id');
}

export function getAgent(db: Db, id: string): Promise<AgentRow | undefined> {
  return agents(db).where({ id }).first();
}

/** The agents of `ids` that exist, by id. */
export function agentsByIds(db: Db, ids: readonly string[]): Promise<Pick<AgentRow, 'id' | 'hostname'>[]> {
  return agents(db).whereIn('id', ids).orderBy('id').select('id', 'hostname');
}

export async function agentIdByTokenHash(db: Db, tokenHash: string): Promise<string | undefined> {
  const row = await agents(db).where({ token_hash: tokenHash }).first('id');
  return row?.id;
}

export async function touchAgent(db: Db, id: string): Promise<void> {
  await agents(db).where({ id }).update({ last_seen_at: db.fn.now() });
}
