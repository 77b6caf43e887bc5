import type { AgentStatus, Family } from '../contract';
import { jsonb, type Db } from './index';

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
  /** pending until an admin accepts it (or its enrolment token was pre-accepted); revoked for ever. */
  status: AgentStatus;
  /** Why an admin must look before accepting (e.g. `duplicate-hostname`); null when nothing stands out. */
  flag: string | null;
  enrolment_token_id: string | null;
  accepted_by: string | null;
  accepted_at: Date | null;
  revoked_by: string | null;
  revoked_at: Date | null;
  /** Runs on this agent may not be approved by their requester (copied onto each run at creation). */
  four_eyes: boolean;
  /** Issue 12: `{ env: 'prod', role: 'web' }`; from PATCHNANNY_LABELS at registration, then admins'. */
  labels: Record<string, string>;
}

export type { AgentStatus };

export type NewAgent = Omit<
  AgentRow,
  | 'created_at'
  | 'last_seen_at'
  | 'accepted_by'
  | 'accepted_at'
  | 'revoked_by'
  | 'revoked_at'
  | 'flag'
  | 'enrolment_token_id'
  | 'four_eyes'
  | 'labels'
> &
  Partial<Pick<AgentRow, 'flag' | 'enrolment_token_id' | 'accepted_by' | 'accepted_at' | 'labels'>>;

const agents = (db: Db) => db<AgentRow>('agents');

/** Insert an agent seen now; undefined when the id is taken. */
export async function insertAgent(db: Db, agent: NewAgent): Promise<AgentRow | undefined> {
  const [row] = await agents(db)
    .insert({ ...agent, labels: jsonb(db, agent.labels ?? {}), last_seen_at: db.fn.now() })
    .onConflict('id')
    .ignore()
    .returning('*');
  return row;
}

/**
 * The id for a new agent whose host name slugs to `base`: `base` while it is free, else
 * `base-<n>` one past the highest numeric suffix taken. One query however many agents share the
 * name (the 1,000th registration of a name used to take 999 inserts, then a 500).
 */
export async function freeAgentId(db: Db, base: string): Promise<string> {
  const { rows } = await db.raw<{ rows: { taken: boolean; max: string | null }[] }>(
    `select exists (select 1 from agents where id = :base) as taken,
            (select max(suffix::bigint) from (
               select substring(id from cast(:from as integer)) as suffix from agents where id like :prefix
             ) s where suffix ~ '^[1-9][0-9]{0,11}$') as max`,
    // A slug is [a-z0-9-] only: no LIKE wildcards in the prefix. The cast: an untyped position
    // would make substring() take it as a regular expression.
    { base, prefix: `${base}-%`, from: base.length + 2 },
  );
  const { taken, max } = rows[0];
  return taken ? `${base}-${max === null ? 2 : Number(max) + 1}` : base;
}

export function listAgents(db: Db): Promise<AgentRow[]> {
  return agents(db).select('*').orderBy('id');
}

export function getAgent(db: Db, id: string): Promise<AgentRow | undefined> {
  return agents(db).where({ id }).first();
}

/** Agents that are not revoked, with their labels: what a selector is resolved against (issue 12). */
export function selectableAgents(db: Db): Promise<Pick<AgentRow, 'id' | 'hostname' | 'status' | 'labels'>[]> {
  return agents(db).whereNot({ status: 'revoked' }).orderBy('id').select('id', 'hostname', 'status', 'labels');
}

/** The agents of `ids` that exist, by id. */
export function agentsByIds(db: Db, ids: readonly string[]): Promise<Pick<AgentRow, 'id' | 'hostname' | 'status'>[]> {
  return agents(db).whereIn('id', ids).orderBy('id').select('id', 'hostname', 'status');
}

/**
 * Hold the registration lock of a host name until the transaction ends, so two registrations of
 * one name cannot both find no accepted agent with it and both be accepted.
 */
export async function lockHostname(trx: Db, hostname: string): Promise<void> {
  await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`agent-hostname:${hostname.toLowerCase()}`]);
}

/** The accepted agent with this host name (host names compare case-insensitively), if any. */
export function acceptedAgentNamed(db: Db, hostname: string): Promise<Pick<AgentRow, 'id'> | undefined> {
  return agents(db)
    .where({ status: 'accepted' })
    .whereRaw('lower(hostname) = lower(?)', [hostname])
    .orderBy('id')
    .first('id');
}

/**
 * Accept a pending agent (an accepted one stays as it was accepted); undefined when there is no
 * such agent, the row unchanged when it is revoked (the caller refuses that).
 */
export async function acceptAgent(db: Db, id: string, by: string): Promise<AgentRow | undefined> {
  const [row] = await agents(db)
    .where({ id, status: 'pending' })
    .update({ status: 'accepted', accepted_by: by, accepted_at: db.fn.now() as unknown as Date })
    .returning('*');
  return row ?? getAgent(db, id);
}

/**
 * Revoke an agent for ever: its token stops working at once (the API and the gate read the
 * status on every request). The row stays, for the history of its runs. Undefined when unknown;
 * a second revoke leaves the first one's who and when.
 */
export async function revokeAgent(db: Db, id: string, by: string): Promise<AgentRow | undefined> {
  const [row] = await agents(db)
    .where({ id })
    .whereNot({ status: 'revoked' })
    .update({ status: 'revoked', revoked_by: by, revoked_at: db.fn.now() as unknown as Date })
    .returning('*');
  return row ?? getAgent(db, id);
}

/**
 * The agent a token belongs to, with its status: the API and the agent gate both refuse a token
 * whose agent is not `accepted` (the API lets a pending agent read itself, so it can wait).
 */
export function agentByTokenHash(db: Db, tokenHash: string): Promise<Pick<AgentRow, 'id' | 'status'> | undefined> {
  return agents(db).where({ token_hash: tokenHash }).first('id', 'status');
}

export async function touchAgent(db: Db, id: string): Promise<void> {
  await agents(db).where({ id }).update({ last_seen_at: db.fn.now() });
}

/** The agents these token hashes belong to, with their status (the gate re-checks open calls in one query). */
export function agentsByTokenHashes(
  db: Db,
  tokenHashes: readonly string[],
): Promise<Pick<AgentRow, 'id' | 'status' | 'token_hash'>[]> {
  return agents(db).whereIn('token_hash', tokenHashes).select('id', 'status', 'token_hash');
}

/** Switch four-eyes for the agent's future runs; undefined when unknown. */
export async function setAgentFourEyes(db: Db, id: string, fourEyes: boolean): Promise<AgentRow | undefined> {
  const [row] = await agents(db).where({ id }).update({ four_eyes: fourEyes }).returning('*');
  return row;
}

/** Replace an agent's labels (an admin's edit); undefined when unknown. */
export async function setAgentLabels(
  db: Db,
  id: string,
  labels: Record<string, string>,
): Promise<{ before: Record<string, string>; row: AgentRow } | undefined> {
  const current = await agents(db).where({ id }).forUpdate().first('labels');
  if (!current) return undefined;
  const [row] = await agents(db)
    .where({ id })
    .update({ labels: jsonb(db, labels) })
    .returning('*');
  return { before: current.labels, row };
}
