import { z } from 'zod';
import { AgentId, ApprovalPolicy, freeText, RunMode } from '../../contract';
import { LabelSelector } from '../../contract/labels';
import { MAX_ROLLOUT_HOSTS, RebootPolicy, RebootTimeoutSeconds, RunHooks } from '../../contract/rollout-policy';

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
    z.strictObject({ count: z.number().int().min(0) }),
    z.strictObject({ percent: z.number().int().min(0).max(100) }),
  ])
  .default({ count: 0 });

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
    canary: CanarySize.optional(),
    maxConcurrency: MaxConcurrency,
    maxFailures: MaxFailures,
    reboot: RebootPolicy.optional(),
    hooks: RunHooks.optional(),
    /** How long a rebooted host has to come back (default DEFAULT_REBOOT_TIMEOUT_SECONDS). */
    rebootTimeoutSeconds: RebootTimeoutSeconds.optional(),
  })
  .strict();
export type StartRolloutBody = z.infer<typeof StartRolloutBody>;

export const RolloutParams = z.object({ id: z.string().regex(/^rol-[0-9a-z]{26}$/, 'a rollout id like rol-<ulid>') });
