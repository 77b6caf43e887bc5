/**
 * The review step's messages: approve and reject arrive as Updates (the API: refused
 * synchronously) or as Signals (`temporal workflow signal`: a refused one is recorded and
 * ignored). One rule decides both.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import type { IgnoredDecision, RunStatus } from '../contract';
import { checkApprove, checkReject, type ApproveDecision, type RejectDecision } from '../contract/workflow-safe';
import { approveSignal, approveUpdate, DECISION_REFUSED, rejectSignal, rejectUpdate, statusQuery } from './messages';

export type Decision = ({ kind: 'approve' } & ApproveDecision) | ({ kind: 'reject' } & RejectDecision);
type Refusal = { type: (typeof DECISION_REFUSED)[keyof typeof DECISION_REFUSED]; message: string };

export interface Review {
  /** The decision made so far (null until one is accepted). */
  readonly decision: Decision | null;
  /** Wait until a decision is accepted or `deadline` (epoch ms) passes; records ignored signals meanwhile. */
  waitForDecision(deadline: number): Promise<Decision | null>;
  /** Ignored signals not yet written to the database. */
  readonly unrecorded: IgnoredDecision[];
}

/** Register the status query and the approve/reject handlers for this run. */
export function openReview(status: RunStatus, recordIgnored: (ignored: IgnoredDecision[]) => Promise<void>): Review {
  let decision: Decision | null = null;
  const unrecorded: IgnoredDecision[] = [];

  /** The one rule: well-formed, the run is waiting, and an approval names the current plan. */
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
    if (made.kind === 'approve' && made.planHash !== status.planHash) {
      return {
        type: DECISION_REFUSED.stalePlan,
        message: `stale plan hash: ${made.planHash} is not the current plan ${status.planHash}`,
      };
    }
    return made;
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

  // Signals cannot be refused synchronously: a refused one is kept on the run and recorded.
  const onSignal = (kind: Decision['kind']) => (raw: unknown) => {
    const r = judge(kind, raw);
    if (!refused(r)) {
      decision = r;
      return;
    }
    const ignored = { at: new Date().toISOString(), kind, reason: r.message, payload: raw };
    status.ignoredDecisions.push(ignored);
    unrecorded.push(ignored);
  };
  setHandler(approveSignal, onSignal('approve'));
  setHandler(rejectSignal, onSignal('reject'));
  setHandler(statusQuery, () => status);

  return {
    get decision() {
      return decision;
    },
    unrecorded,
    async waitForDecision(deadline: number) {
      while (decision === null) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        await condition(() => decision !== null || unrecorded.length > 0, remaining);
        await recordIgnored(unrecorded.splice(0));
      }
      return decision;
    },
  };
}
