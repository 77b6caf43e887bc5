/**
 * The review desk's API (issue 17): runs awaiting approval grouped by identical plan, decisions
 * on a whole group, and the difference between two runs' plans. Request schemas are what the
 * routes validate; response schemas describe the answers (for the OpenAPI document and the CLI).
 */
import { z } from 'zod';
import { AgentId, ApiErrorCode, ApproveDecision, PlanPackage, RejectDecision, RUN_ID_PATTERN } from '../../contract';
import { PLAN_HASH_PATTERN } from '../../contract/workflow-safe';

const RunId = z.string().max(200).regex(RUN_ID_PATTERN, 'a run id like patch-run.<agent>.<ulid>');
const PlanHash = z.string().regex(PLAN_HASH_PATTERN, 'a 64-hex plan hash');

/** One request decides on at most this many runs (a signed approval is ~300 bytes: well under the 1 MB body limit). */
export const MAX_GROUP_DECISIONS = 1000;

export const GroupParams = z.object({ planHash: PlanHash });

/**
 * Approve a group: one signed statement per run, each over that run's id and the group's plan
 * hash (the path's) by the caller, exactly as `POST /v1/runs/:id/approve` takes it. Only the
 * runs listed are approved: a run that joined the group after the page was drawn was not seen,
 * so it is not approved.
 */
export const ApproveGroupBody = z
  .object({
    approvals: z
      .array(ApproveDecision.pick({ runId: true, at: true, keyId: true, signature: true }).strict())
      .min(1)
      .max(MAX_GROUP_DECISIONS)
      .refine((a) => new Set(a.map((x) => x.runId)).size === a.length, 'each run at most once'),
  })
  .strict();
export type ApproveGroupBody = z.infer<typeof ApproveGroupBody>;

/** Reject a group with one reason; `runIds` limits it to those runs (default: every run of the group now). */
export const RejectGroupBody = z
  .object({
    reason: RejectDecision.shape.reason,
    runIds: z
      .array(RunId)
      .min(1)
      .max(MAX_GROUP_DECISIONS)
      .refine((a) => new Set(a).size === a.length, 'each run at most once')
      .optional(),
  })
  .strict();
export type RejectGroupBody = z.infer<typeof RejectGroupBody>;

export const DiffQuery = z.object({ a: RunId, b: RunId }).strict();
export type DiffQuery = z.infer<typeof DiffQuery>;

// ---- answers ----

const Iso = z.string();

/** A package of a plan, with whether its repository is a security one (repo name says "security"). */
export const ReviewPackage = PlanPackage.extend({ security: z.boolean() });

export const ReviewRun = z.object({
  id: RunId,
  agentId: AgentId,
  hostname: z.string(),
  /** A Proxmox VE container of the agent's node, or null for the host itself. */
  container: z.number().int().nullable(),
  requestedBy: z.string(),
  fourEyes: z.boolean(),
  windowId: z.string().nullable(),
  /** Exception patterns the plan was made with (`--exclude`). */
  exclusions: z.array(z.string()),
  /** Packages those exclusions kept back on this host. */
  held: z.array(PlanPackage),
  /** The host's reboot state when the plan was made. */
  rebootRequired: z.boolean().nullable(),
  rebootReason: z.string().nullable(),
  createdAt: Iso,
  waitingSince: Iso,
});

export const ReviewGroup = z.object({
  planHash: PlanHash,
  /** The plan every run of the group has (the same packages, versions and actions). */
  plan: z.array(ReviewPackage),
  securityPackages: z.number().int(),
  hosts: z.number().int(),
  runs: z.array(ReviewRun),
  /** Held packages across the group, with how many of its runs hold each. */
  held: z.array(PlanPackage.extend({ runs: z.number().int() })),
  rebootRequired: z.number().int(),
  oldestWaitingSince: Iso,
});
export type ReviewGroup = z.infer<typeof ReviewGroup>;

export const ReviewsAnswer = z.object({ groups: z.array(ReviewGroup), runs: z.number().int() });

const Refusal = z.object({ runId: z.string(), code: ApiErrorCode, message: z.string() });

export const GroupDecisionAnswer = z.object({
  planHash: PlanHash,
  /** Runs that took the decision; each recorded it itself (its own event and audit entry). */
  decided: z.array(z.object({ runId: RunId, agentId: AgentId, phase: z.string() })),
  /** Runs that refused it, and why (drift, no longer waiting, signature, four-eyes). */
  refused: z.array(Refusal),
  /** Runs awaiting approval with this plan that the request did not name (left waiting). */
  notIncluded: z.array(RunId),
});
export type GroupDecisionAnswer = z.infer<typeof GroupDecisionAnswer>;

const DiffSide = z.object({ runId: RunId, agentId: AgentId, planHash: PlanHash.nullable() });
const Version = PlanPackage.pick({ current: true, candidate: true, repo: true, action: true });

export const DiffAnswer = z.object({
  a: DiffSide,
  b: DiffSide,
  onlyInA: z.array(PlanPackage),
  onlyInB: z.array(PlanPackage),
  /** Same package and arch in both plans, different versions or action. */
  differing: z.array(z.object({ name: z.string(), arch: z.string(), a: Version, b: Version })),
  same: z.number().int(),
});
export type DiffAnswer = z.infer<typeof DiffAnswer>;
