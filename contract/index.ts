/**
 * The shapes that cross a process boundary — API ⇄ clients, workflow ⇄ activities, agent ⇄ script.
 * Defined once here, imported by the API, the workflows, the control activities and the agent.
 * Keep this module free of Node built-ins: the workflow bundle imports it.
 */
import { z } from 'zod';
import {
  APPROVAL_POLICIES,
  LIMITS,
  MODES,
  MULTI_LINE_TEXT,
  PLAN_HASH_PATTERN,
  SINGLE_LINE_TEXT,
  ISO_TIME_PATTERN,
  KEY_ID_PATTERN,
  SIGNATURE_PATTERN,
  type ApprovalPolicy as Policy,
  type ApproveDecision as Approve,
  type RejectDecision as Reject,
  type RunMode as Mode,
} from './workflow-safe';

import { RUN_ID_PATTERN } from './run-id';
import { Labels } from './labels';
export { agentTaskQueue, newRunId, parseRunId, RUN_ID_PATTERN, windowScheduleId } from './run-id';
export type { PinnedKey, SignedApproval } from './approval';
import type { ContainerOptions, RunTimeouts } from './workflow-safe';
export {
  DEFAULT_TIMEOUTS,
  resolveRunTimeouts,
  windowRunTimeouts,
  type ConfigurableTimeouts,
  type PatchRunInput,
  type RunContainer,
  type RunTimeouts,
  type RunWindow,
  type SnapshotMode,
  SNAPSHOT_MODES,
  resolveContainerOptions,
  DEFAULT_CONTAINER_LOCK_WAIT_MS,
  OPTION_SOURCES,
  type ContainerOptionLayer,
  type ContainerOptions,
  type OptionSource,
} from './workflow-safe';

export const FAMILIES = ['apt', 'dnf', 'yum', 'zypper', 'pacman'] as const;
export const Family = z.enum(FAMILIES);
export type Family = z.infer<typeof Family>;

/**
 * The shipped script that serves a family: `<family>-update.sh`, except the yum family (EL 8+
 * hosts whose entry point is `yum`, which there is dnf 4): dnf-update.sh, which drives that yum.
 */
export const scriptNameFor = (family: Family): string => `${family === 'yum' ? 'dnf' : family}-update.sh`;

/**
 * Legal package names (or simple `*` globs) per family, as the scripts check them too.
 * None may start with `-`, so a name can never be mistaken for a flag.
 */
export const PACKAGE_NAME_PATTERNS: Record<Family, RegExp> = {
  apt: /^[a-z0-9*][a-z0-9+.*-]*$/,
  dnf: /^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$/,
  yum: /^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$/,
  zypper: /^[A-Za-z0-9_*][A-Za-z0-9_+.*-]*$/,
  pacman: /^[a-z0-9@_+*][a-z0-9@._+*-]*$/,
};

/** A package name or glob legal in at least one family (the per-family check comes on top). */
export const PackagePattern = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9@_+*][A-Za-z0-9@._+*-]*$/, 'not a legal package name or glob');

export function isLegalPackageName(family: Family, name: string): boolean {
  return name.length <= 128 && PACKAGE_NAME_PATTERNS[family].test(name);
}

export const AgentId = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'lower-case letters, digits and dashes');
export type AgentId = z.infer<typeof AgentId>;

export const OsInfo = z.object({
  id: freeText(64).min(1),
  versionId: freeText(64).default(''),
  prettyName: freeText(200).default(''),
  family: Family,
});
export type OsInfo = z.infer<typeof OsInfo>;

export const AgentRegistration = z.object({
  hostname: z
    .string()
    .min(1)
    .max(253)
    .regex(/^[A-Za-z0-9][A-Za-z0-9.-]*$/, 'not a hostname'),
  os: OsInfo,
  /**
   * The agent's PATCHNANNY_LABELS (issue 12): stored at its first registration only; from then on
   * admins own its labels (an agent must not move itself into another group).
   */
  labels: Labels.optional(),
});
export type AgentRegistration = z.infer<typeof AgentRegistration>;

export const AGENT_STATUSES = ['pending', 'accepted', 'revoked'] as const;
export type AgentStatus = (typeof AGENT_STATUSES)[number];

/** Flags a registration can carry for the admin who accepts it. */
export const AGENT_FLAGS = {
  /** Another accepted agent has this host name: a re-installed host, or someone posing as it. */
  duplicateHostname: 'duplicate-hostname',
} as const;

export const Agent = z.object({
  id: AgentId,
  hostname: z.string(),
  os: OsInfo,
  family: Family,
  taskQueue: z.string(),
  createdAt: z.string(),
  lastSeenAt: z.string().nullable(),
  /** pending until an admin accepts it (or its enrolment token was pre-accepted); revoked for ever. */
  status: z.enum(AGENT_STATUSES),
  /** Why an admin should look before accepting, e.g. `duplicate-hostname`; null when nothing stands out. */
  flag: z.string().nullable(),
  acceptedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  /** Runs on it may not be approved by the person who requested them. */
  fourEyes: z.boolean(),
  /** `env=prod`, `role=web` (issue 12): windows and baselines select agents by them. */
  labels: Labels,
});
export type Agent = z.infer<typeof Agent>;

/** An enrolment token as the API shows it (the token itself only once, at creation). */
export const EnrolmentToken = z.object({
  id: z.string(),
  note: z.string(),
  expiresAt: z.string(),
  /** null: any number of registrations until it expires */
  maxUses: z.number().int().nullable(),
  uses: z.number().int(),
  preAccepted: z.boolean(),
  createdBy: z.string(),
  createdAt: z.string(),
  revokedAt: z.string().nullable(),
});
export type EnrolmentToken = z.infer<typeof EnrolmentToken>;

// ---- the script contract (docs/script-contract.md) ----

export const PackageAction = z.enum(['upgrade', 'install', 'remove', 'downgrade']);

/** An advisory the package manager names for a planned package (dnf updateinfo, zypper patch). */
export const Advisory = z.object({
  id: z.string().min(1).max(200),
  /** As the repository's metadata spells it (`Important`, `moderate`); null when it has none. */
  severity: z.string().max(100).nullable(),
});
export type Advisory = z.infer<typeof Advisory>;

export const PlanPackage = z.object({
  name: z.string().min(1),
  arch: z.string(),
  current: z.string().nullable(),
  candidate: z.string().nullable(),
  repo: z.string(),
  action: PackageAction,
  /**
   * Whether the candidate is a security fix (issue 16): true/false from the manager's own data
   * (apt: a `*-security` suite; dnf: updateinfo type=security; zypper: a patch of category
   * security), null when the manager has none (pacman). Absent in plans recorded before issue 16.
   */
  security: z.boolean().nullable().optional(),
  /** The advisories (security or not) the manager names for the candidate; absent or [] when none. */
  advisories: z.array(Advisory).max(100).optional(),
});
export type PlanPackage = z.infer<typeof PlanPackage>;

export const ChangedPackage = z.object({
  name: z.string().min(1),
  arch: z.string(),
  from: z.string().nullable(),
  to: z.string().nullable(),
});
export type ChangedPackage = z.infer<typeof ChangedPackage>;

export const ScriptErrorCode = z.enum(['usage', 'environment', 'lock', 'refresh', 'transaction']);

/** What a run does and a script is asked to do: plan only, or plan and apply. */
export const RunMode = z.enum(MODES);
export type RunMode = Mode;

/** The one JSON document a patch script prints on stdout. */
export const ScriptResult = z.object({
  contract: z.literal(1),
  manager: z.string(),
  mode: RunMode.nullable(),
  packages: z.array(PlanPackage),
  held: z.array(PlanPackage),
  changed: z.array(ChangedPackage),
  reboot_required: z.boolean(),
  reboot_reason: z.string().nullable(),
  manager_exit_code: z.number().int().nullable(),
  error: z.object({ code: ScriptErrorCode, message: z.string() }).nullable(),
});
export type ScriptResult = z.infer<typeof ScriptResult>;

/** Documented script exit codes (docs/script-contract.md). */
export const SCRIPT_EXIT = { ok: 0, usage: 2, environment: 3, lock: 4, refresh: 5, transaction: 6 } as const;

/**
 * One output stream of a script execution as the agent saw it (issue 17, docs/review-desk.md
 * "Live output"): the whole stream's size and SHA-256, and the same of the bytes it sent to the
 * API (`kept`), which differ only when the stream outgrew the per-step cap and its middle was
 * dropped. The text itself never travels through Temporal.
 */
export interface StreamDigest {
  bytes: number;
  sha256: string;
  keptBytes: number;
  keptSha256: string;
}

/** Where a script execution's output went: streamed to the API, only its digests in the result. */
export interface ExecutionOutput {
  /** Which step the chunks are stored under (`plan`, `replan`, `apply`). */
  step: OutputStepName;
  /** The activity attempt that produced this result: its chunks are the step's output. */
  attempt: number;
  stdout: StreamDigest;
  stderr: StreamDigest;
  /** False when some chunk could not be delivered (the API unreachable, the queue full). */
  delivered: boolean;
}

export const OUTPUT_STEPS = ['plan', 'replan', 'apply'] as const;
export type OutputStepName = (typeof OUTPUT_STEPS)[number];
export const OutputStepName = z.enum(OUTPUT_STEPS);

export type OutputStream = 'stdout' | 'stderr';

/**
 * One piece of a script's streamed output, as the agent cuts it and the API stores it (keyed by
 * step, attempt, stream and seq). `gapBefore` counts the bytes dropped before it (the per-step cap).
 * Only the agent and the API use it; the workflows never see output (Buffer is a type here only).
 */
export interface OutputChunk {
  step: OutputStepName;
  attempt: number;
  stream: OutputStream;
  seq: number;
  data: Buffer;
  gapBefore: number;
}

/** What the agent's script-execute activity returns. */
export interface ScriptExecution {
  mode: RunMode;
  argv: string[];
  exitCode: number;
  /**
   * The output text, when the agent has no API to stream it to (and in results recorded before
   * issue 17). Agents that stream it report `output` instead: stdout is then empty and stderr
   * holds only the agent's own note (a broken script contract), if any.
   */
  stdout: string;
  stderr: string;
  /** Issue 17: the streamed output's step, attempt and digests. */
  output?: ExecutionOutput;
  /** Parsed stdout, or null when the script broke the contract. */
  result: ScriptResult | null;
  /** Fingerprint of the plan (`packages`), null when there is no parsed result. */
  planHash: string | null;
  durationMs: number;
  /** A Proxmox VE container run: what the node did to the container around the script (docs/proxmox.md). */
  container?: ContainerReport;
}

/** What the node agent did to a container around one script execution. */
export interface ContainerReport {
  vmid: number;
  /** Started for the run (startIfStopped) and stopped again afterwards. */
  startedAndStopped: boolean;
  /** The snapshot taken before an apply (`patchnanny-<run>`), null when none was asked for. */
  snapshot: string | null;
  /** The failed apply was rolled back to that snapshot. */
  rolledBack: boolean;
  /** Older patchnanny snapshots removed to keep the configured count. */
  pruned: string[];
}

// ---- runs ----

export const ApprovalPolicy = z.enum(APPROVAL_POLICIES);
export type ApprovalPolicy = Policy;

export const RUN_PHASES = [
  'pending',
  /** waiting for its host: another run's scripts are running there (run events say the position) */
  'queued',
  'planning',
  'awaiting-approval',
  'applying',
  'reporting',
  'done',
] as const;
export const RunPhase = z.enum(RUN_PHASES);
export type RunPhase = z.infer<typeof RunPhase>;

export const RUN_OUTCOMES = [
  'completed',
  'failed',
  'rejected',
  'expired',
  'plan-drift',
  'cancelled',
  'agent-unreachable',
  /** pre-approved window: nobody approved the plan by window start */
  'skipped-unapproved',
  /** window: the run had not started applying by the window's cutoff */
  'skipped-window-closed',
  /** the agent was revoked by an admin before the run finished (issue 13) */
  'agent-revoked',
  /**
   * the workflow's input was not what the API wrote (started around the API: another run's id,
   * another agent, mode or approval): refused, nothing executed, no row written (issue 13)
   */
  'untrusted-input',
  /** Proxmox VE: the container is no longer on the agent's node (destroyed or migrated; docs/proxmox.md) */
  'container-gone',
  /** Proxmox VE: the container was stopped and the run did not ask to start it (startIfStopped) */
  'skipped-container-stopped',
  /** Proxmox VE: the container stayed locked (backup, migrate, snapshot) for the run's whole lock wait */
  'skipped-container-locked',
  /** issue 12: the host was rebooted after the apply and did not come back with a new boot id in time */
  'reboot-timeout',
  /** issue 12: a must-succeed pre-hook failed (or timed out), so the apply never ran */
  'skipped-pre-hook-failed',
  /** issue 12: the apply succeeded but a must-succeed post-hook (a health check) failed */
  'post-hook-failed',
] as const;
export const RunOutcome = z.enum(RUN_OUTCOMES);
export type RunOutcome = z.infer<typeof RunOutcome>;

/** Free text a person typed: bounded, and no NUL or other control characters (tab and newlines when multi-line). */
export function freeText(max: number, opts: { multiLine?: boolean } = {}) {
  // A declaration, not a const: OsInfo, above, uses it.
  return z
    .string()
    .max(max)
    .regex(
      opts.multiLine ? MULTI_LINE_TEXT : SINGLE_LINE_TEXT,
      opts.multiLine
        ? 'must not contain control characters other than tab and newline'
        : 'must not contain control characters',
    );
}

export const ApproveDecision = z.object({
  runId: z.string().max(200).regex(RUN_ID_PATTERN, 'a run id'),
  planHash: z.string().regex(PLAN_HASH_PATTERN, 'a 64-hex plan hash'),
  by: freeText(LIMITS.by).min(1),
  at: z.string().regex(ISO_TIME_PATTERN, 'an ISO time like 2026-11-30T14:00:00.000Z'),
  keyId: z.string().regex(KEY_ID_PATTERN, 'an approver key id (key_…)'),
  signature: z.string().regex(SIGNATURE_PATTERN, 'a base64url Ed25519 signature (86 characters)'),
}) satisfies z.ZodType<Approve>;
export type ApproveDecision = Approve;

export const RejectDecision = z.object({
  by: freeText(LIMITS.by).min(1),
  reason: freeText(LIMITS.reason, { multiLine: true }).min(1),
}) satisfies z.ZodType<Reject>;
export type RejectDecision = Reject;

/**
 * A decision the run refused (stale or malformed signal), kept on the run for the record. The
 * payload is kept as a bounded JSON preview, never the raw value: a signal can carry anything.
 */
export interface IgnoredDecision {
  at: string;
  kind: 'approve' | 'reject';
  reason: string;
  payload: string;
}

/** Live status of a run, answered by the workflow's `status` query. */
export interface RunStatus {
  runId: string;
  agentId: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  phase: RunPhase;
  outcome: RunOutcome | null;
  failureReason: string | null;
  planHash: string | null;
  plan: PlanPackage[];
  held: PlanPackage[];
  exclusions: string[];
  approvedBy: string | null;
  rejectedBy: string | null;
  /** The first refused signals (at most MAX_IGNORED_KEPT); the rest are only counted. */
  ignoredDecisions: IgnoredDecision[];
  ignoredDecisionsDropped: number;
  /** The apply finished after the window's end. */
  overran: boolean;
  /** Issue 12: the host was rebooted by this run and came back (a new boot id); absent before. */
  rebooted?: boolean;
}

/** Stable error codes of the HTTP API: `{ error: { code, message, field? } }`. */
export const ApiErrorCode = z.enum([
  'validation_failed',
  'unauthorized',
  /** 401: the token belongs to an agent an admin revoked (the agent exits rather than re-register) */
  'agent_revoked',
  'forbidden',
  'not_found',
  'method_not_allowed',
  'conflict',
  /** 409: the agent is pending acceptance or revoked, so nothing may run on it */
  'agent_not_accepted',
  'payload_too_large',
  'unsupported_media_type',
  'unavailable',
  'internal',
]);
export type ApiErrorCode = z.infer<typeof ApiErrorCode>;

// ---- package exceptions and maintenance windows ----

export const PackageException = z.object({
  id: z.string(),
  agentId: AgentId,
  /** A Proxmox VE container of the agent's node (docs/proxmox.md); null: the agent's host. */
  container: z.number().int().nullable(),
  package: z.string(),
  reason: z.string(),
  createdBy: z.string(),
  createdAt: z.string(),
  updatedAt: z.string(),
  expiresAt: z.string().nullable(),
  active: z.boolean(),
});
export type PackageException = z.infer<typeof PackageException>;

export const WINDOW_APPROVALS = ['auto', 'pre-approved', 'dry-run-only'] as const;
export const WindowApproval = z.enum(WINDOW_APPROVALS);
export type WindowApproval = z.infer<typeof WindowApproval>;

/** What a window firing needs to start its runs; read from the database at each firing. */
export interface WindowFiring {
  windowId: string;
  /** The configured run timeouts; the window narrows pickup and approval to its own times. */
  timeouts: RunTimeouts;
  approval: WindowApproval;
  /** Seconds between the firing and the window start (pre-approved lead time, else 0). */
  leadSeconds: number;
  durationSeconds: number;
  cutoffSeconds: number;
  /**
   * `container`: a Proxmox VE container of that agent's node (docs/proxmox.md), with the options
   * in effect for its run (window > container default > off); `options` absent in firings
   * recorded before they existed (off).
   */
  agents: { agentId: string; hostname: string; container?: number; options?: ContainerOptions }[];
  /** Issue 12: every run's reboot policy and hooks; absent when the window has none (and in firings recorded before). */
  reboot?: 'if-needed' | 'always';
  hooks?: import('./rollout-policy').RunHooks;
  /** Targets not run in this firing, and why (pending acceptance, revoked, unknown); absent in firings recorded before issue 13. */
  skippedTargets?: { agentId: string; reason: string }[];
  /**
   * Issue 12: the firing starts a rollout with this pacing (startWindowRollout resolves its
   * targets; `agents` is empty then); absent: every host starts at once.
   */
  rollout?: {
    canary?: { count: number } | { percent: number };
    maxConcurrency: number;
    maxFailures: { count: number } | { percent: number };
  };
}
