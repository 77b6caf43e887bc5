import { z } from 'zod';
import {
  AgentId,
  ApprovalPolicy,
  ApproveDecision,
  RejectDecision,
  RUN_ID_PATTERN,
  RunMode,
  RunOutcome,
  RunPhase,
  SNAPSHOT_MODES,
  OutputStepName,
} from '../../contract';
import { Vmid } from '../../contract/proxmox';
import { RebootPolicy, RunHooks } from '../../contract/rollout-policy';

const RunId = z.string().max(200).regex(RUN_ID_PATTERN, 'a run id like patch-run.<agent>.<ulid>');

const timeoutMs = (max: number) => z.number().int().min(100).max(max);

export const StartRunBody = z
  .object({
    agentId: AgentId,
    mode: RunMode,
    approval: ApprovalPolicy.default('required'),
    /** Issue 16: plan and apply only the security fixes (the patch script's `--security-only`). */
    securityOnly: z.boolean().default(false),
    /** Per-run overrides of the configured defaults (milliseconds). */
    timeouts: z
      .object({
        approvalMs: timeoutMs(30 * 24 * 3600_000).optional(),
        agentPickupMs: timeoutMs(7 * 24 * 3600_000).optional(),
        scriptMs: timeoutMs(24 * 3600_000).optional(),
        /** Issue 12: how long a rebooted host has to come back with a new boot id (default 15 min). */
        rebootMs: timeoutMs(24 * 3600_000).optional(),
        /** A container run: how long a locked container is waited for (default 15 min). */
        containerLockMs: z
          .number()
          .int()
          .min(0)
          .max(24 * 3600_000)
          .optional(),
      })
      .strict()
      .default({}),
    /** A Proxmox VE container of the agent's node (its VMID): the run patches it (docs/proxmox.md). */
    container: Vmid.optional(),
    /**
     * Container runs: start a stopped container for the run and stop it again afterwards. Absent:
     * the container's default decides, else off (run > window > container default > off).
     */
    startIfStopped: z.boolean().optional(),
    /** Container runs: snapshot before apply; `rollback` also rolls a failed apply back. Absent: as startIfStopped. */
    snapshot: z.enum(SNAPSHOT_MODES).optional(),
    /** Issue 12: reboot after a successful apply (docs/reboot-and-hooks.md); default never. */
    reboot: RebootPolicy.default('never'),
    /** Issue 12: hook scripts (uploaded with PUT /v1/hooks/:name) before and after the apply. */
    hooks: RunHooks.optional(),
  })
  .strict()
  .refine((b) => b.container !== undefined || (b.startIfStopped === undefined && b.snapshot === undefined), {
    message: 'startIfStopped and snapshot apply to container runs only',
    path: ['container'],
  });
export type StartRunBody = z.infer<typeof StartRunBody>;

export const ListRunsQuery = z
  .object({
    agentId: AgentId.optional(),
    phase: RunPhase.optional(),
    outcome: RunOutcome.optional(),
    container: Vmid.optional(),
    limit: z.coerce.number().int().min(1).max(500).default(50),
    /** Cursor: return runs created before this run id (from the previous page's `next`). */
    before: RunId.optional(),
  })
  .strict();
export type ListRunsQuery = z.infer<typeof ListRunsQuery>;

export const RunParams = z.object({ id: RunId });
/** A signed approval (issue 10): the run id is the path's, `by` the caller's name; both are in what was signed. */
export const ApproveBody = ApproveDecision.pick({ planHash: true, at: true, keyId: true, signature: true }).strict();
export const RejectBody = RejectDecision.pick({ reason: true }).strict();

/** Issue 17: the largest chunk an agent posts (it flushes at 64 KiB; room for a UTF-8 carry). */
export const MAX_CHUNK_BYTES = 128 * 1024;
const Base64 = z
  .string()
  .max(Math.ceil(MAX_CHUNK_BYTES / 3) * 4)
  .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'base64');

/** One chunk of a script's output, posted by the run's own agent while the script runs. */
export const PostOutputBody = z.strictObject({
  step: OutputStepName,
  /** The Temporal activity attempt (1, 2, …) the chunk comes from. */
  attempt: z.number().int().min(1).max(10_000),
  stream: z.enum(['stdout', 'stderr']),
  /** 0, 1, 2, … per run + step + attempt + stream. */
  seq: z.number().int().min(0).max(10_000_000),
  /** The bytes, base64 (output need not be UTF-8). */
  data: Base64,
  /** Bytes the agent dropped from the stream's middle just before this chunk (the per-step cap). */
  gapBefore: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).default(0),
});
export type PostOutputBody = z.infer<typeof PostOutputBody>;

export const OutputQuery = z
  .object({
    step: OutputStepName.optional(),
    /** Cursor: only chunks stored after this one (the `next` of the previous answer, or an SSE event id). */
    after: z.coerce.number().int().min(0).optional(),
    /** Long-poll: wait up to this many milliseconds for a chunk after `after` when there is none yet. */
    waitMs: z.coerce.number().int().min(0).max(30_000).default(0),
    /** `1`: server-sent events (text/event-stream) until the step (or the run) has ended. */
    follow: z.enum(['0', '1']).optional(),
  })
  .strict();
export type OutputQuery = z.infer<typeof OutputQuery>;
