import type { RunOutcome } from '../../contract';
import type { Db } from '../../db';
import { listAgents, type AgentRow } from '../../db/agents';
import { activeExceptionsByAgent, hostCompliance, planCounts, type HostComplianceRow } from '../../db/reviews';
import type { ComplianceAnswer, HostCompliance, HostState } from './schema';
import { iso } from '../views';

export interface ComplianceDeps {
  db: Db;
}

/** A last run ending so means the host is not patched as asked: someone must look. */
const FAILING: readonly RunOutcome[] = ['failed', 'plan-drift'];

export function complianceService({ db }: ComplianceDeps) {
  /** Every agent's compliance, by agent id (one query for the history, one for plan counts, one for exceptions). */
  async function byAgent(staleAfterSeconds: number, agents?: AgentRow[]): Promise<Map<string, HostCompliance>> {
    const [rows, all, exceptions] = await Promise.all([
      hostCompliance(db),
      agents ? Promise.resolve(agents) : listAgents(db),
      activeExceptionsByAgent(db),
    ]);
    const counts = await planCounts(
      db,
      rows.flatMap((r) => (r.plan_run_id ? [r.plan_run_id] : [])),
    );
    const history = new Map(rows.map((r) => [r.agent_id, r]));
    const now = Date.now();
    const out = new Map<string, HostCompliance>();
    for (const agent of all) {
      const h = history.get(agent.id);
      const c = h?.plan_run_id ? counts.get(h.plan_run_id) : undefined;
      // A plan that was applied (its apply completed) leaves nothing pending as of that run.
      const applied = h?.plan_run_mode === 'apply' && h.plan_run_outcome === 'completed';
      const pendingUpgrades = h?.plan_run_id ? (applied ? 0 : (c?.packages ?? 0)) : null;
      const pendingSecurity = h?.plan_run_id ? (applied ? 0 : (c?.security ?? 0)) : null;
      const compliance: Omit<HostCompliance, 'state'> = {
        lastSeenAt: iso(agent.last_seen_at),
        lastSuccessfulApplyAt: iso(h?.last_applied_at ?? null),
        pendingUpgrades,
        pendingSecurity,
        planRunId: h?.plan_run_id ?? null,
        plannedAt: iso(h?.plan_at ?? null),
        held: c?.held ?? [],
        excluded: exceptions.get(agent.id) ?? [],
        rebootRequired: h?.reboot_required ?? null,
        rebootReason: h?.reboot_reason ?? null,
        rebootRequiredSince: iso(h?.reboot_since ?? null),
        lastRun:
          h?.last_run_id && h.last_outcome
            ? {
                id: h.last_run_id,
                outcome: h.last_outcome,
                failureReason: h.last_failure_reason,
                finishedAt: iso(h.last_finished_at),
              }
            : null,
      };
      out.set(agent.id, { state: stateOf(agent, h, compliance, now - staleAfterSeconds * 1000), ...compliance });
    }
    return out;
  }

  async function summary(staleAfterSeconds: number): Promise<ComplianceAnswer> {
    const hosts = [...(await byAgent(staleAfterSeconds)).values()];
    const count = (state: HostState) => hosts.filter((h) => h.state === state).length;
    const fleet = hosts.filter((h) => h.state !== 'not-accepted');
    return {
      hosts: fleet.length,
      upToDate: count('up-to-date'),
      pending: count('pending'),
      failing: count('failing'),
      unreachable: count('unreachable'),
      unknown: count('unknown'),
      pendingReboot: fleet.filter((h) => h.rebootRequired).length,
      pendingSecurityHosts: fleet.filter((h) => (h.pendingSecurity ?? 0) > 0).length,
      notAccepted: count('not-accepted'),
      staleAfterSeconds,
      at: new Date().toISOString(),
    };
  }

  return { byAgent, summary };
}
export type ComplianceService = ReturnType<typeof complianceService>;

/** One state a host, the most urgent first: who is not in the fleet, cannot be reached, failed, has work. */
function stateOf(
  agent: AgentRow,
  h: HostComplianceRow | undefined,
  c: Omit<HostCompliance, 'state'>,
  seenAfter: number,
): HostState {
  if (agent.status !== 'accepted') return 'not-accepted';
  if (!agent.last_seen_at || agent.last_seen_at.getTime() < seenAfter || h?.last_outcome === 'agent-unreachable')
    return 'unreachable';
  if (h?.last_outcome && FAILING.includes(h.last_outcome)) return 'failing';
  if (c.pendingUpgrades === null) return 'unknown';
  return c.pendingUpgrades > 0 ? 'pending' : 'up-to-date';
}
