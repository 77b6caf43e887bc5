import { z } from 'zod';
import { AgentId, freeText, SNAPSHOT_MODES, WindowApproval } from '../../contract';
import { isTimezone, Recurrence } from './schedule-spec';
import { Vmid } from '../../contract/proxmox';
import { RebootPolicy, RebootTimeoutSeconds, RunHooks } from '../../contract/rollout-policy';
import { LabelSelector } from '../../contract/labels';
import { CanarySize, MaxConcurrency, MaxFailures } from '../rollouts/schema';

/** Issue 12: each firing starts a rollout paced like POST /v1/rollouts (docs/rollouts.md). */
export const WindowRollout = z.strictObject({
  canary: CanarySize.optional(),
  maxConcurrency: MaxConcurrency,
  maxFailures: MaxFailures,
});

const Timestamp = z.iso.datetime({ offset: true });

export const WindowFields = z
  .object({
    name: freeText(200).trim().min(1),
    targets: z
      .object({
        agentIds: z.array(AgentId).max(5000).default([]),
        /** Issue 12: every agent the selector matches when the window fires (not when it is made). */
        selector: LabelSelector.optional(),
        /** Proxmox VE containers of nodes (docs/proxmox.md): each patched as a target of its own. */
        containers: z
          .array(z.strictObject({ agentId: AgentId, vmid: Vmid }))
          .max(5000)
          .optional(),
      })
      .strict()
      .refine(
        (t) => t.agentIds.length + (t.containers?.length ?? 0) >= 1 || t.selector !== undefined,
        'at least one agent, selector or container',
      ),
    recurrence: Recurrence,
    timezone: freeText(64).refine(isTimezone, 'not an IANA time zone (e.g. Europe/Berlin)'),
    durationSeconds: z
      .number()
      .int()
      .positive('must be greater than 0')
      .max(7 * 86400),
    /** No host starts applying in the last `cutoffSeconds` of the window. */
    cutoffSeconds: z.number().int().min(0),
    approval: WindowApproval,
    /** pre-approved only: how long before the window the plan is made (default 24 h). */
    leadSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86400)
      .optional(),
    startAt: Timestamp.nullable().optional(),
    endAt: Timestamp.nullable().optional(),
    note: freeText(500, { multiLine: true }).optional(),
    paused: z.boolean().optional(),
    /** Runs of this window may not be approved by the window's creator (their requester). */
    fourEyes: z.boolean().optional(),
    /**
     * Container targets: start a stopped container for its run and stop it again; null or absent:
     * each container's default decides, else off (run > window > container default > off).
     */
    startIfStopped: z.boolean().nullable().optional(),
    /** Container targets: snapshot before apply (`rollback` also rolls a failed apply back); null: as startIfStopped. */
    snapshot: z.enum(SNAPSHOT_MODES).nullable().optional(),
    /** Issue 12: each run's reboot policy (docs/reboot-and-hooks.md); absent: never. */
    reboot: RebootPolicy.optional(),
    /** Issue 12: each run's pre/post hooks; null or absent: none. */
    hooks: RunHooks.nullable().optional(),
    /** Issue 12: how long a rebooted host has to come back (default DEFAULT_REBOOT_TIMEOUT_SECONDS). */
    rebootTimeoutSeconds: RebootTimeoutSeconds.nullable().optional(),
    /** Issue 12: each firing starts a rollout (canary, concurrency, error budget) instead of every host at once. */
    rollout: WindowRollout.nullable().optional(),
  })
  .strict();
export type WindowFields = z.infer<typeof WindowFields>;

function checkConsistency(w: WindowFields, ctx: z.RefinementCtx) {
  if (w.cutoffSeconds >= w.durationSeconds)
    ctx.addIssue({ code: 'custom', path: ['cutoffSeconds'], message: 'must be less than durationSeconds' });
  if (w.leadSeconds !== undefined && w.leadSeconds > 0 && w.approval !== 'pre-approved') {
    ctx.addIssue({ code: 'custom', path: ['leadSeconds'], message: 'only pre-approved windows have a lead time' });
  }
  const containerOption = (['startIfStopped', 'snapshot'] as const).find((k) => w[k] !== undefined && w[k] !== null);
  if (containerOption && !w.targets.containers?.length)
    ctx.addIssue({ code: 'custom', path: [containerOption], message: 'applies to container targets only' });
  if (w.rollout && w.approval === 'pre-approved')
    ctx.addIssue({
      code: 'custom',
      path: ['rollout'],
      message:
        'a pre-approved window plans every host ahead of the window start, which a rollout cannot honour (its waves start hosts one after another, inside the window): use approval auto or dry-run-only',
    });
  if (w.rollout && w.targets.containers?.length)
    ctx.addIssue({ code: 'custom', path: ['rollout'], message: 'a rollout patches hosts, not containers' });
  if (w.startAt && w.endAt && Date.parse(w.startAt) >= Date.parse(w.endAt))
    ctx.addIssue({ code: 'custom', path: ['endAt'], message: 'must be after startAt' });
}

export const CreateWindowBody = WindowFields.superRefine(checkConsistency);
export type CreateWindowBody = z.infer<typeof CreateWindowBody>;
/** PATCH takes any subset; the merged window is validated as a whole. */
export const UpdateWindowBody = WindowFields.partial().strict();
export type UpdateWindowBody = z.infer<typeof UpdateWindowBody>;

export const WindowParams = z.object({ id: z.string().regex(/^win-[0-9a-z]{26}$/, 'a window id like win-<ulid>') });
export const PauseBody = z
  .object({ note: freeText(500, { multiLine: true }).optional() })
  .strict()
  .default({});
