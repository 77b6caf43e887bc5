import type { PlanPackage } from '../../contract';
import type { Db } from '../../db';
import { appendAudit } from '../../db/audit';
import { heldOfAwaitingRuns, listAwaitingRuns, packagesOfRuns, type AwaitingRunRow } from '../../db/reviews';
import { getRun, getRunRecord, planPackageOf, type RunPackageRow } from '../../db/runs';
import { pool } from '../../runtime/pool';
import { ApiError, notFound } from '../errors';
import type { RunsService } from '../runs/service';
import type {
  ApproveGroupBody,
  DiffAnswer,
  DiffQuery,
  GroupDecisionAnswer,
  RejectGroupBody,
  ReviewGroup,
} from './schema';

export interface ReviewsDeps {
  db: Db;
  /** Each run's decision goes through the runs' own approve/reject: the same rules, checks and messages. */
  runs: RunsService;
}

/**
 * A security fix: as the manager named it (issue 16's `security`: apt's -security pocket, dnf and
 * zypper advisories), else, when it said nothing, a repository whose name says security.
 */
const isSecurity = (p: PlanPackage) => p.security ?? /security/i.test(p.repo);
/** How many runs' Updates are in flight at once: each waits for its workflow task (~0.1–0.5 s). */
const PARALLEL_DECISIONS = 8;

const pkgKey = (p: { name: string; arch: string }) => `${p.name}\0${p.arch}`;

export function reviewsService({ db, runs }: ReviewsDeps) {
  /** Runs awaiting approval, grouped by identical plan, the group waiting longest first. */
  async function list(): Promise<{ groups: ReviewGroup[]; runs: number }> {
    const waiting = await listAwaitingRuns(db);
    const byPlan = new Map<string, AwaitingRunRow[]>();
    for (const r of waiting) byPlan.set(r.plan_hash, [...(byPlan.get(r.plan_hash) ?? []), r]);
    // The same hash is the same plan, so one run's package rows stand for the group's.
    const representatives = [...byPlan.values()].map((rs) => rs[0].id);
    const [planned, held] = await Promise.all([packagesOfRuns(db, representatives, 'planned'), heldOfAwaitingRuns(db)]);
    const rowsByRun = (rows: RunPackageRow[]) => {
      const m = new Map<string, PlanPackage[]>();
      for (const r of rows) m.set(r.run_id, [...(m.get(r.run_id) ?? []), planPackageOf(r)]);
      return m;
    };
    const plans = rowsByRun(planned);
    const helds = rowsByRun(held);
    const groups = [...byPlan.entries()].map(([planHash, rs]): ReviewGroup => {
      const plan = (plans.get(rs[0].id) ?? []).map((p) => ({ ...p, security: isSecurity(p) }));
      const heldAcross = new Map<string, PlanPackage & { runs: number }>();
      for (const r of rs)
        for (const p of helds.get(r.id) ?? []) {
          const seen = heldAcross.get(pkgKey(p));
          heldAcross.set(pkgKey(p), { ...p, runs: (seen?.runs ?? 0) + 1 });
        }
      return {
        planHash,
        plan,
        securityPackages: plan.filter((p) => p.security).length,
        hosts: new Set(rs.map((r) => `${r.agent_id}/${r.container ?? ''}`)).size,
        runs: rs.map((r) => ({
          id: r.id,
          agentId: r.agent_id,
          hostname: r.hostname,
          container: r.container,
          requestedBy: r.requested_by,
          fourEyes: r.four_eyes,
          windowId: r.window_id,
          exclusions: r.exclusions,
          held: helds.get(r.id) ?? [],
          rebootRequired: r.reboot_required,
          rebootReason: r.reboot_reason,
          createdAt: r.created_at.toISOString(),
          waitingSince: r.updated_at.toISOString(),
        })),
        held: [...heldAcross.values()].sort((x, y) => (pkgKey(x) < pkgKey(y) ? -1 : 1)),
        rebootRequired: rs.filter((r) => r.reboot_required).length,
        oldestWaitingSince: rs[0].updated_at.toISOString(),
      };
    });
    return { groups, runs: waiting.length };
  }

  /**
   * Why a run cannot take a decision on the group `planHash` now, or null when it can: it exists,
   * still awaits approval, and its own plan is the group's (a run whose plan is another has
   * drifted from what the page showed; the workflow would refuse it as stale too).
   */
  async function groupProblem(runId: string, planHash: string): Promise<ApiError | null> {
    const row = await getRun(db, runId);
    if (!row) return notFound(`run ${runId}`);
    if (row.outcome) return new ApiError('conflict', `run ${runId} already ended: ${row.outcome}`);
    if (row.phase !== 'awaiting-approval')
      return new ApiError('conflict', `run ${runId} is ${row.phase}, not awaiting approval`);
    if (row.plan_hash !== planHash)
      return new ApiError(
        'conflict',
        `plan drift: run ${runId}'s plan is ${row.plan_hash ?? 'none'}, not the reviewed ${planHash}; review it again`,
      );
    return null;
  }

  /** Decide on each run, one outcome per run (never all-or-nothing: each run records its own decision). */
  async function decideEach(
    planHash: string,
    runIds: readonly string[],
    decide: (runId: string) => Promise<{ phase: string; agentId: string }>,
  ): Promise<GroupDecisionAnswer> {
    const results = await pool(runIds, PARALLEL_DECISIONS, async (runId) => {
      try {
        const problem = await groupProblem(runId, planHash);
        if (problem) throw problem;
        return { runId, ok: true as const, ...(await decide(runId)) };
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return { runId, ok: false as const, code: err.code, message: err.message };
      }
    });
    const named = new Set(runIds);
    const stillWaiting = (await listAwaitingRuns(db)).filter((r) => r.plan_hash === planHash && !named.has(r.id));
    const answer: GroupDecisionAnswer = {
      planHash,
      decided: results.flatMap((r) => (r.ok ? [{ runId: r.runId, agentId: r.agentId, phase: r.phase }] : [])),
      refused: results.flatMap((r) => (r.ok ? [] : [{ runId: r.runId, code: r.code, message: r.message }])),
      notIncluded: stillWaiting.map((r) => r.id),
    };
    return answer;
  }

  /** 409 when no run took the decision: the caller's view is stale (or every signature failed). */
  function noneDecided(answer: GroupDecisionAnswer, verb: string): void {
    if (answer.decided.length > 0 || answer.refused.length === 0) return;
    const reasons = answer.refused.slice(0, 5).map((r) => r.message);
    const more = answer.refused.length > 5 ? `; and ${answer.refused.length - 5} more` : '';
    const allForbidden = answer.refused.every((r) => r.code === 'forbidden');
    throw new ApiError(
      allForbidden ? 'forbidden' : 'conflict',
      `no run ${verb} for plan ${answer.planHash}: ${reasons.join('; ')}${more}`,
    );
  }

  /**
   * Approve the runs of a group, each with its own signed statement over its own run id and the
   * group's plan hash, through the same path as a single approval (four-eyes, the workflow's
   * signature and plan checks). Each run still refuses drift itself; one refusal stops no other.
   */
  async function approve(planHash: string, body: ApproveGroupBody, by: string): Promise<GroupDecisionAnswer> {
    const signed = new Map(body.approvals.map((a) => [a.runId, a]));
    const answer = await decideEach(planHash, [...signed.keys()], async (runId) => {
      const { at, keyId, signature } = signed.get(runId)!;
      const status = await runs.approve(runId, { planHash, at, keyId, signature }, by);
      return { phase: status.phase, agentId: status.agentId };
    });
    await appendAudit(db, {
      actor: by,
      kind: 'review.group-approve',
      subject: planHash,
      detail: { approved: answer.decided.map((d) => d.runId), refused: answer.refused },
    });
    noneDecided(answer, 'approved');
    return answer;
  }

  /** Reject the named runs of a group (default: every run awaiting approval with this plan now). */
  async function reject(planHash: string, body: RejectGroupBody, by: string): Promise<GroupDecisionAnswer> {
    const runIds = body.runIds ?? (await listAwaitingRuns(db)).filter((r) => r.plan_hash === planHash).map((r) => r.id);
    if (runIds.length === 0) throw new ApiError('conflict', `no run awaits approval with plan ${planHash}`);
    const answer = await decideEach(planHash, runIds, async (runId) => {
      const status = await runs.reject(runId, body.reason, by);
      return { phase: status.phase, agentId: status.agentId };
    });
    await appendAudit(db, {
      actor: by,
      kind: 'review.group-reject',
      subject: planHash,
      detail: { reason: body.reason, rejected: answer.decided.map((d) => d.runId), refused: answer.refused },
    });
    noneDecided(answer, 'rejected');
    return answer;
  }

  /** What one run's plan has that the other's has not, and where the versions differ. */
  async function diff(q: DiffQuery): Promise<DiffAnswer> {
    const side = async (runId: string) => {
      const row = await getRun(db, runId);
      if (!row) throw notFound(`run ${runId}`);
      const { packages } = await getRunRecord(db, runId);
      const plan = packages.filter((p) => p.kind === 'planned').map(planPackageOf);
      return { head: { runId, agentId: row.agent_id, planHash: row.plan_hash }, plan };
    };
    const [a, b] = await Promise.all([side(q.a), side(q.b)]);
    const inB = new Map(b.plan.map((p) => [pkgKey(p), p]));
    const inA = new Map(a.plan.map((p) => [pkgKey(p), p]));
    const version = (p: PlanPackage) => ({
      current: p.current,
      candidate: p.candidate,
      repo: p.repo,
      action: p.action,
    });
    const differing: DiffAnswer['differing'] = [];
    let same = 0;
    for (const p of a.plan) {
      const other = inB.get(pkgKey(p));
      if (!other) continue;
      if (p.current === other.current && p.candidate === other.candidate && p.action === other.action) same++;
      else differing.push({ name: p.name, arch: p.arch, a: version(p), b: version(other) });
    }
    return {
      a: a.head,
      b: b.head,
      onlyInA: a.plan.filter((p) => !inB.has(pkgKey(p))),
      onlyInB: b.plan.filter((p) => !inA.has(pkgKey(p))),
      differing,
      same,
    };
  }

  return { list, approve, reject, diff };
}
export type ReviewsService = ReturnType<typeof reviewsService>;
