import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { AGENT_FLAGS, agentTaskQueue, type Agent, type AgentRegistration } from '../../contract';
import { matches, parseSelector, type Labels } from '../../contract/labels';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import type { ComplianceService } from '../compliance/service';
import {
  acceptAgent,
  acceptedAgentNamed,
  freeAgentId,
  getAgent,
  insertAgent,
  listAgents,
  lockHostname,
  revokeAgent,
  setAgentFourEyes,
  setAgentLabels,
  touchAgent,
  type AgentRow,
} from '../../db/agents';
import { enrolmentTokenState, refusalMessage, spendEnrolmentToken } from '../../db/enrolment-tokens';
import { openRunIds } from '../../db/runs';
import { agentRevokedSignal } from '../../workflows/messages';
import { newToken, type Principal } from '../auth';
import { ApiError, notFound } from '../errors';
import type { UpdateAgentBody } from './schema';
import { iso } from '../views';

export interface AgentsDeps {
  db: Db;
  temporal: Client;
}

function toAgent(row: AgentRow): Agent {
  return {
    id: row.id,
    hostname: row.hostname,
    os: { id: row.os_id, versionId: row.os_version, prettyName: row.os_pretty_name, family: row.family },
    family: row.family,
    taskQueue: agentTaskQueue(row.id),
    createdAt: row.created_at.toISOString(),
    lastSeenAt: iso(row.last_seen_at),
    status: row.status,
    flag: row.flag,
    acceptedAt: iso(row.accepted_at),
    revokedAt: iso(row.revoked_at),
    fourEyes: row.four_eyes,
    labels: row.labels ?? {},
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

/** Who may register an agent: an admin (accepted at once) or an enrolment token (its rules). */
export type Registrar = { role: 'admin'; name: string } | Extract<Principal, { role: 'enrol' }>;

export function agentsService({ db, temporal }: AgentsDeps) {
  /**
   * Register an agent. With an enrolment token, one use is spent in the same transaction as the
   * insert (a failed insert gives it back), so a token with N uses makes at most N agents however
   * many hosts register at once. The new agent is pending unless the token is pre-accepted or an
   * admin registers it; a host name that an accepted agent already has is pending and flagged
   * whoever registers it, so a second `web-01` never becomes trusted without an admin looking.
   */
  async function register(reg: AgentRegistration, by: Registrar): Promise<{ agent: Agent; token: string }> {
    const base = slug(reg.hostname);
    const { token, hash } = newToken('agent');
    const row = await db.transaction(async (trx) => {
      let enrolment: { id: string; preAccepted: boolean } | null = null;
      if (by.role === 'enrol') {
        const spent = await spendEnrolmentToken(trx, by.tokenHash);
        if (!spent) {
          // Expired, used up or revoked since authentication (another registration took the last use).
          const state = await enrolmentTokenState(trx, by.tokenHash);
          throw new ApiError('unauthorized', refusalMessage(by.tokenId, state?.refusal ?? 'unknown'));
        }
        enrolment = { id: spent.id, preAccepted: spent.pre_accepted };
      }
      await lockHostname(trx, reg.hostname);
      const duplicate = await acceptedAgentNamed(trx, reg.hostname);
      const accepted = !duplicate && (enrolment === null || enrolment.preAccepted);
      // Registrations of one slug at the same moment can pick the same id: the loser asks again.
      for (let attempt = 0; attempt < 5; attempt++) {
        const inserted = await insertAgent(trx, {
          id: await freeAgentId(trx, base),
          hostname: reg.hostname,
          os_id: reg.os.id,
          os_version: reg.os.versionId,
          os_pretty_name: reg.os.prettyName,
          family: reg.os.family,
          package_manager: reg.os.family,
          token_hash: hash,
          status: accepted ? 'accepted' : 'pending',
          flag: duplicate ? AGENT_FLAGS.duplicateHostname : null,
          enrolment_token_id: enrolment?.id ?? null,
          // The agent's own labels count only here, at its first registration (issue 12).
          labels: reg.labels ?? {},
          ...(accepted ? { accepted_by: by.name, accepted_at: new Date() } : {}),
        });
        if (inserted) {
          await appendAudit(trx, {
            actor: by.name,
            kind: 'agent.registered',
            subject: inserted.id,
            detail: {
              hostname: inserted.hostname,
              family: inserted.family,
              status: inserted.status,
              flag: inserted.flag,
              enrolmentTokenId: inserted.enrolment_token_id,
              labels: inserted.labels,
            },
          });
          return inserted;
        }
      }
      throw new ApiError('conflict', `too many registrations of ${reg.hostname} at once; try again`);
    });
    return { agent: toAgent(row), token };
  }

  /** Every agent with its compliance, both from one read of the agents. */
  async function listWithCompliance(compliance: ComplianceService, staleAfterSeconds: number, selector?: string) {
    const all = await listAgents(db);
    // Validated at the boundary (LabelSelector), so it parses.
    const requirements = selector === undefined ? null : parseSelector(selector);
    const rows = requirements ? all.filter((r) => matches(r.labels ?? {}, requirements)) : all;
    const states = await compliance.byAgent(staleAfterSeconds, rows);
    return rows.map((r) => ({ ...toAgent(r), compliance: states.get(r.id)! }));
  }

  /** `seen`: the agent itself is asking, which is its liveness signal. */
  async function get(id: string, opts: { seen?: boolean } = {}): Promise<Agent> {
    if (opts.seen) await touchAgent(db, id);
    const row = await getAgent(db, id);
    if (!row) throw notFound(`agent ${id}`);
    return toAgent(row);
  }

  /** Accept a pending agent: from now on its token works and runs may target it. */
  async function accept(id: string, by: string): Promise<Agent> {
    const row = await db.transaction(async (trx) => {
      const r = await acceptAgent(trx, id, by);
      if (!r) throw notFound(`agent ${id}`);
      if (r.status === 'revoked')
        throw new ApiError(
          'conflict',
          `agent ${id} was revoked by ${r.revoked_by ?? 'an admin'}; it cannot be accepted`,
        );
      await appendAudit(trx, { actor: by, kind: 'agent.accepted', subject: id });
      return r;
    });
    return toAgent(row);
  }

  /**
   * Revoke an agent: its token is refused from this commit on, and each of its open runs is told
   * (agentRevoked) and ends `agent-revoked`. Idempotent: revoking again answers 200 and tells the
   * runs again, so a revoke whose signals Temporal refused can simply be repeated.
   */
  async function revoke(id: string, by: string): Promise<{ agent: Agent; runsEnded: string[] }> {
    // Each request is recorded (a repeated revoke re-signals runs, so it is an act of its own),
    // in the transaction that revokes.
    const row = await db.transaction(async (trx) => {
      const r = await revokeAgent(trx, id, by);
      if (!r) throw notFound(`agent ${id}`);
      await appendAudit(trx, { actor: by, kind: 'agent.revoked', subject: id });
      return r;
    });
    const runIds = await openRunIds(db, id);
    const told: string[] = [];
    const failed: string[] = [];
    for (const runId of runIds) {
      try {
        await temporal.workflow.getHandle(runId).signal(agentRevokedSignal, { by });
        told.push(runId);
      } catch (err) {
        // Ended meanwhile (or its workflow not started yet: resolveRun refuses a revoked agent).
        if (err instanceof WorkflowNotFoundError) continue;
        failed.push(`${runId}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failed.length > 0)
      throw new ApiError(
        'unavailable',
        `agent ${id} is revoked, but ${failed.length} of its runs could not be told (repeat the DELETE): ${failed.join('; ')}`,
      );
    return { agent: toAgent(row), runsEnded: told };
  }

  async function update(id: string, body: UpdateAgentBody): Promise<Agent> {
    const row = await setAgentFourEyes(db, id, body.fourEyes);
    if (!row) throw notFound(`agent ${id}`);
    return toAgent(row);
  }

  /**
   * Replace an agent's labels. Which windows and baselines select the agent changes with them, so
   * the edit is audited with the labels before and after, in the transaction that makes it.
   */
  async function setLabels(id: string, labels: Labels, by: string): Promise<Agent> {
    const row = await db.transaction(async (trx) => {
      const changed = await setAgentLabels(trx, id, labels);
      if (!changed) throw notFound(`agent ${id}`);
      await appendAudit(trx, {
        actor: by,
        kind: 'agent.labels-set',
        subject: id,
        detail: { before: changed.before, after: labels },
      });
      return changed.row;
    });
    return toAgent(row);
  }

  return { register, listWithCompliance, get, accept, revoke, update, setLabels };
}
export type AgentsService = ReturnType<typeof agentsService>;
