/**
 * The review step's messages: approve and reject arrive as Updates (the API: refused
 * synchronously) or as Signals (`temporal workflow signal`: a refused one is recorded and
 * ignored). One rule decides both.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import type { IgnoredDecision, RunStatus } from '../contract';
import {
  checkApprove,
  checkReject,
  MAX_IGNORED_KEPT,
  preview,
  type ApproveDecision,
  type RejectDecision,
} from '../contract/workflow-safe';
import { approvalProblem, type PinnedKey } from '../contract/approval';
import { approveSignal, approveUpdate, DECISION_REFUSED, rejectSignal, rejectUpdate, statusQuery } from './messages';

export type Decision = ({ kind: 'approve' } & ApproveDecision) | ({ kind: 'reject' } & RejectDecision);
type Refusal = { type: (typeof DECISION_REFUSED)[keyof typeof DECISION_REFUSED]; message: string };

export interface Review {
  /** The decision made so far (null until one is accepted). */
  readonly decision: Decision | null;
  /** Wait until a decision is accepted or `deadline` (epoch ms) passes; records ignored signals meanwhile. */
  waitForDecision(deadline: number): Promise<Decision | null>;
  /** Write the refused signals to the record if any arrived since the last write. */
  flushIgnored(): Promise<void>;
  /**
   * Issue 12: a plan-group approval found recorded for the run's rollout. `standing` checks it
   * before the run waits (the decision it would make, or null); `offer` gives it to a waiting run
   * as if it had been signalled (taken when it holds, else recorded as refused, with why).
   */
  standing(raw: unknown): Decision | null;
  offer(raw: unknown): void;
}

/** Issue 12: the plan-group rollout a run belongs to, pinned by its claim (activities/control PlanGroup). */
export interface GroupTrust {
  rolloutId: string;
  since: number;
  mayNotApprove: readonly string[];
}

/**
 * Register the status query and the approve/reject handlers for this run. `recordIgnored`
 * writes the run's whole (bounded) list of refused signals and the count of those not kept.
 */
export function openReview(
  status: RunStatus,
  recordIgnored: (ignored: IgnoredDecision[], dropped: number) => Promise<void>,
  trust: () => {
    keys: readonly PinnedKey[];
    planAt: number;
    mayNotApprove: readonly string[];
    group: GroupTrust | null;
  },
): Review {
  let decision: Decision | null = null;
  let unrecorded = false;

  /**
   * The one rule: well-formed, the run is waiting, and an approval names the current plan of this
   * run and is signed by its `by` with an approver key pinned at run start (contract/approval.ts).
   * A rejection needs no signature: it can only stop a run, never change a host.
   */
  function judge(kind: Decision['kind'], raw: unknown): Decision | Refusal {
    const checked = kind === 'approve' ? checkApprove(raw) : checkReject(raw);
    if (!checked.ok) return { type: DECISION_REFUSED.malformed, message: `malformed: ${checked.problem}` };
    if (status.phase !== 'awaiting-approval' || decision !== null) {
      return {
        type: DECISION_REFUSED.notAwaiting,
        message: `run is ${status.outcome ?? status.phase}, not awaiting approval`,
      };
    }
    const made = { kind, ...checked.value } as Decision;
    return made.kind === 'approve' ? (approveProblem(made) ?? made) : made;
  }

  /**
   * Whether an approval may decide this run, whatever its phase: it names the current plan, is
   * signed by its `by` with a key pinned at run start over this run's id — or, in a plan-group
   * rollout, over the rollout's id (signed after the rollout began) — and four-eyes holds.
   */
  function approveProblem(made: Extract<Decision, { kind: 'approve' }>): Refusal | null {
    if (made.planHash !== status.planHash) {
      return {
        type: DECISION_REFUSED.stalePlan,
        message: `stale plan hash: ${made.planHash} is not the current plan ${status.planHash}`,
      };
    }
    const { keys, planAt, mayNotApprove, group } = trust();
    const forGroup = group !== null && made.runId === group.rolloutId;
    const problem = approvalProblem(made, {
      runId: forGroup ? group.rolloutId : status.runId,
      planHash: made.planHash,
      keys,
      now: Date.now(),
      planAt: forGroup ? group.since : planAt,
    });
    if (problem !== null) return { type: DECISION_REFUSED.badSignature, message: `refused approval: ${problem}` };
    // Four-eyes holds here too, not only in the API: a signed approval sent straight to Temporal.
    if (mayNotApprove.includes(made.by))
      return {
        type: DECISION_REFUSED.fourEyes,
        message: `four-eyes: ${made.by} requested this run (or its window) and cannot approve it`,
      };
    if (forGroup && group.mayNotApprove.includes(made.by))
      return {
        type: DECISION_REFUSED.fourEyes,
        message: `four-eyes: ${made.by} created rollout ${group.rolloutId} and cannot give its plan-group approval`,
      };
    return null;
  }
  const refused = (r: Decision | Refusal): r is Refusal => 'type' in r;

  // Updates: the validator refuses (the caller sees the failure), the handler accepts.
  const validator = (kind: Decision['kind']) => (raw: unknown) => {
    const r = judge(kind, raw);
    if (refused(r)) throw ApplicationFailure.create({ type: r.type, message: r.message });
  };
  const accept = (kind: Decision['kind']) => (raw: unknown) => {
    decision = judge(kind, raw) as Decision;
    return status;
  };
  setHandler(approveUpdate, accept('approve'), { validator: validator('approve') });
  setHandler(rejectUpdate, accept('reject'), { validator: validator('reject') });

  // Signals cannot be refused synchronously: a refused one is kept on the run and recorded —
  // the first MAX_IGNORED_KEPT of them, so a burst of signals cannot grow the run without bound.
  const onSignal = (kind: Decision['kind']) => (raw: unknown) => {
    const r = judge(kind, raw);
    if (!refused(r)) {
      decision = r;
      return;
    }
    unrecorded = true;
    if (status.ignoredDecisions.length >= MAX_IGNORED_KEPT) status.ignoredDecisionsDropped++;
    else status.ignoredDecisions.push({ at: new Date().toISOString(), kind, reason: r.message, payload: preview(raw) });
  };
  setHandler(approveSignal, onSignal('approve'));
  const offer = onSignal('approve');
  setHandler(rejectSignal, onSignal('reject'));
  setHandler(statusQuery, () => status);

  async function flushIgnored() {
    if (!unrecorded) return;
    unrecorded = false;
    await recordIgnored([...status.ignoredDecisions], status.ignoredDecisionsDropped);
  }

  return {
    get decision() {
      return decision;
    },
    flushIgnored,
    offer,
    standing(raw: unknown) {
      const checked = checkApprove(raw);
      if (!checked.ok) return null;
      const made = { kind: 'approve' as const, ...checked.value };
      return approveProblem(made) === null ? made : null;
    },
    async waitForDecision(deadline: number) {
      while (decision === null) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        await condition(() => decision !== null || unrecorded, remaining);
        await flushIgnored();
      }
      return decision;
    },
  };
}
