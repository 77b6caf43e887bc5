import { z } from 'zod';
import { AgentId, ApprovalPolicy, freeText, RunMode } from '../../contract';
import { LabelSelector } from '../../contract/labels';
import { RebootPolicy, RunHooks } from '../../contract/rollout-policy';

/** The most hosts one rollout may name (its targets are recorded, and its history must stay small). */
export const MAX_ROLLOUT_HOSTS = 5000;

const Count = z.strictObject({ count: z.number().int().min(1) });
const Percent = z.strictObject({ percent: z.number().int().min(1).max(100) });

export const StartRolloutBody = z
  .object({
    name: freeText(200).trim().optional(),
    /** Explicit agents and/or a label selector; the union of both, resolved and recorded at start. */
    targets: z
      .strictObject({
        agentIds: z.array(AgentId).min(1).max(MAX_ROLLOUT_HOSTS).optional(),
        selector: LabelSelector.optional(),
      })
      .refine((t) => t.agentIds !== undefined || t.selector !== undefined, 'agentIds or selector (or both)'),
    mode: RunMode,
    approval: ApprovalPolicy,
    /** The first wave: this many hosts (or this percentage, rounded up, at least 1), all finished before the rest start. */
    canary: z.union([Count, Percent]).optional(),
    maxConcurrency: z.number().int().min(1).max(1000).default(10),
    /**
     * The most failed hosts the whole rollout tolerates (a percentage is of the resolved targets,
     * rounded down); one more halts it. Default 0: the first failure halts.
     */
    maxFailures: z
      .union([
        // Bounded: allowed_failures is a PostgreSQL integer (3e9 was a 500), and no rollout has more hosts.
        z.strictObject({ count: z.number().int().min(0).max(MAX_ROLLOUT_HOSTS) }),
        z.strictObject({ percent: z.number().int().min(0).max(100) }),
      ])
      .default({ count: 0 }),
    reboot: RebootPolicy.optional(),
    hooks: RunHooks.optional(),
  })
  .strict();
export type StartRolloutBody = z.infer<typeof StartRolloutBody>;

export const RolloutParams = z.object({ id: z.string().regex(/^rol-[0-9a-z]{26}$/, 'a rollout id like rol-<ulid>') });
