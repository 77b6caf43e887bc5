/**
 * The parts of the contract workflow code needs at run time, without zod: every value imported
 * into the workflow bundle is loaded into each workflow's sandbox, and zod made the bundle 4 MB.
 * The zod schemas in ./index build on the same constants, so both sides check the same rules.
 */
import type { ApproveDecision, RejectDecision } from './index';

export const agentTaskQueue = (agentId: string): string => `agent.${agentId}`;

export const PLAN_HASH_PATTERN = /^[0-9a-f]{64}$/;
export const LIMITS = { by: 200, reason: 2000 } as const;

export const DEFAULT_RUN_TIMEOUTS = {
  approvalMs: 24 * 3600_000,
  agentPickupMs: 5 * 60_000,
  scriptMs: 60 * 60_000,
  heartbeatMs: 30_000,
};

type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

function text(raw: Record<string, unknown>, field: string, max: number): string | null {
  const v = raw[field];
  return typeof v === 'string' && v.length >= 1 && v.length <= max ? v : null;
}

/** Validate an approve decision from an Update or a Signal (a signal's payload is anything). */
export function checkApprove(raw: unknown): Checked<ApproveDecision> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problem: 'not an object' };
  const r = raw as Record<string, unknown>;
  const by = text(r, 'by', LIMITS.by);
  if (by === null) return { ok: false, problem: `by: a name of 1–${LIMITS.by} characters is required` };
  if (typeof r.planHash !== 'string' || !PLAN_HASH_PATTERN.test(r.planHash))
    return { ok: false, problem: 'planHash: a 64-hex plan hash is required' };
  return { ok: true, value: { by, planHash: r.planHash } };
}

export function checkReject(raw: unknown): Checked<RejectDecision> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problem: 'not an object' };
  const r = raw as Record<string, unknown>;
  const by = text(r, 'by', LIMITS.by);
  if (by === null) return { ok: false, problem: `by: a name of 1–${LIMITS.by} characters is required` };
  const reason = text(r, 'reason', LIMITS.reason);
  if (reason === null) return { ok: false, problem: `reason: 1–${LIMITS.reason} characters are required` };
  return { ok: true, value: { by, reason } };
}
