import { z } from 'zod';
import { AgentId, ApprovalPolicy, freeText, RunMode, SNAPSHOT_MODES } from '../../contract';
import { Vmid } from '../../contract/proxmox';
import { LabelSelector } from '../../contract/labels';
import {
  ApprovalScope,
  MAX_ROLLOUT_HOSTS,
  RebootPolicy,
  RebootTimeoutSeconds,
  RunHooks,
} from '../../contract/rollout-policy';
import { ApproveDecision } from '../../contract';

const Count = z.strictObject({ count: z.number().int().min(1) });
const Percent = z.strictObject({ percent: z.number().int().min(1).max(100) });

/**
 * The pacing of a rollout, shared with windows that start one (api/windows/schema.ts):
 * the first wave: this many hosts (or this percentage, rounded up, at least 1), all finished before the rest start.
 */
export const CanarySize = z.union([Count, Percent]);
export const MaxConcurrency = z.number().int().min(1).max(1000).default(10);
/**
 * The most failed hosts the whole rollout tolerates (a percentage is of the resolved targets,
 * rounded down); one more halts it. Default 0: the first failure halts.
 */
export const MaxFailures = z
  .union([
    // Bounded: allowed_failures is a PostgreSQL integer (3e9 was a 500), and no rollout has more hosts.
    z.strictObject({ count: z.number().int().min(0).max(MAX_ROLLOUT_HOSTS) }),
    z.strictObject({ percent: z.number().int().min(0).max(100) }),
  ])
  .default({ count: 0 });

export const StartRolloutBody = z
  .object({
    name: freeText(200).trim().optional(),
    /**
     * Explicit agents and/or a label selector, and Proxmox VE containers — listed, or every
     * supported container a node reports (`containersOf`), each a target of its own; the union,
     * resolved and recorded at start.
     */
    targets: z
      .strictObject({
        agentIds: z.array(AgentId).min(1).max(MAX_ROLLOUT_HOSTS).optional(),
        selector: LabelSelector.optional(),
        containers: z
          .array(z.strictObject({ agentId: AgentId, vmid: Vmid }))
          .min(1)
          .max(MAX_ROLLOUT_HOSTS)
          .optional(),
        containersOf: z.array(AgentId).min(1).max(100).optional(),
      })
      .refine(
        (t) => Object.values(t).some((v) => v !== undefined),
        'agentIds or selector (or both), and/or containers or containersOf',
      ),
    mode: RunMode,
    approval: ApprovalPolicy,
    /**
     * `plan-group`: one signed approval of a plan hash (POST /v1/rollouts/:id/approve) covers every
     * host of the rollout whose plan has that hash; needs approval `required` and mode `apply`.
     */
    approvalScope: ApprovalScope.default('per-run'),
    canary: CanarySize.optional(),
    maxConcurrency: MaxConcurrency,
    maxFailures: MaxFailures,
    reboot: RebootPolicy.optional(),
    hooks: RunHooks.optional(),
    /** How long a rebooted host has to come back (default DEFAULT_REBOOT_TIMEOUT_SECONDS). */
    rebootTimeoutSeconds: RebootTimeoutSeconds.optional(),
    /**
     * Container targets: start a stopped container for its run (and stop it after), snapshot
     * before apply; absent: each container's default decides, else off (docs/proxmox.md).
     */
    startIfStopped: z.boolean().optional(),
    snapshot: z.enum(SNAPSHOT_MODES).optional(),
  })
  .strict()
  .refine(
    (b) =>
      (b.startIfStopped === undefined && b.snapshot === undefined) || b.targets.containers || b.targets.containersOf,
    {
      path: ['startIfStopped'],
      message: 'startIfStopped and snapshot apply to container targets only',
    },
  )
  .refine((b) => b.approvalScope === 'per-run' || (b.approval === 'required' && b.mode === 'apply'), {
    path: ['approvalScope'],
    message: 'plan-group approves plans, so it needs mode apply and approval required',
  });
export type StartRolloutBody = z.infer<typeof StartRolloutBody>;

export const RolloutParams = z.object({ id: z.string().regex(/^rol-[0-9a-z]{26}$/, 'a rollout id like rol-<ulid>') });

/**
 * A plan-group approval: the caller's signed statement over the rollout's id (in `runId`'s place)
 * and the plan hash, exactly as `POST /v1/runs/:id/approve` takes one for a run.
 */
export const ApprovePlanGroupBody = ApproveDecision.pick({
  planHash: true,
  at: true,
  keyId: true,
  signature: true,
}).strict();
export type ApprovePlanGroupBody = z.infer<typeof ApprovePlanGroupBody>;
