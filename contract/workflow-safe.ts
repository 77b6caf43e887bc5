/* eslint-disable no-control-regex -- finding control characters in free text is what these patterns are for */
/**
 * The parts of the contract workflow code needs at run time, without zod: every value imported
 * into the workflow bundle is loaded into each workflow's sandbox, and zod made the bundle 4 MB.
 * The zod schemas in ./index build on these constants and types, so both sides check the same
 * rules. This module imports nothing from ./index.
 */

import type { SignedApproval } from './approval';
import type { RebootPolicy, RunHooks } from './rollout-policy';

/** A run plans only (`dry-run`) or plans, is reviewed and applies (`apply`). */
export const MODES = ['dry-run', 'apply'] as const;
export type RunMode = (typeof MODES)[number];

/** `required`: a person approves the plan; `auto`: policy does. */
export const APPROVAL_POLICIES = ['required', 'auto'] as const;
export type ApprovalPolicy = (typeof APPROVAL_POLICIES)[number];

export const PLAN_HASH_PATTERN = /^[0-9a-f]{64}$/;

/** A webhook delivery's id (= its workflow id): `whd-` and 32 hex of a hash (activities/control/webhooks.ts deliveryId). */
export const DELIVERY_ID_PATTERN = /^whd-[0-9a-f]{32}$/;
/** An approver key id: `key_` and the key's fingerprint (contract/approval-key-id.ts). */
export const KEY_ID_PATTERN = /^key_[A-Za-z0-9_-]{1,64}$/;
/** An Ed25519 signature (64 bytes) in base64url without padding. */
export const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{86}$/;
/** `2026-11-30T14:00:00.000Z` (as Date#toISOString writes it; seconds fraction optional). */
export const ISO_TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;
export const LIMITS = { by: 200, reason: 2000 } as const;

/** Refused signals kept on a run, and the characters of each one's payload preview. */
export const MAX_IGNORED_KEPT = 20;
export const IGNORED_PREVIEW_CHARS = 500;

/**
 * A bounded, printable preview of any value (for the record of a refused signal): JSON, cut to
 * `max` characters, with control characters escaped so no NUL ever reaches the database.
 */
export function preview(value: unknown, max = IGNORED_PREVIEW_CHARS): string {
  let json: string;
  try {
    json = JSON.stringify(value) ?? String(value);
  } catch {
    json = String(value);
  }
  const printable = json.replace(
    /[\u0000-\u001f\u007f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return printable.length <= max ? printable : `${printable.slice(0, max)}…[${printable.length - max} more]`;
}

/**
 * Free text people type (names, reasons, notes): no NUL or other control characters, which
 * PostgreSQL refuses (`\u0000`) or which garble logs and terminals. Multi-line text keeps tab and
 * line breaks.
 */
export const SINGLE_LINE_TEXT = /^[^\u0000-\u001f\u007f]*$/;
export const MULTI_LINE_TEXT = /^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$/;

/** Durations are inputs so tests (no time-skipping server offline) run in seconds. */
export interface RunTimeouts {
  /** How long a plan waits for an admin decision before the run ends `expired`. */
  approvalMs: number;
  /** How long a task may wait for the host's agent to pick it up → `agent-unreachable`. */
  agentPickupMs: number;
  /** Upper bound of one script execution. */
  scriptMs: number;
  /** The agent heartbeats at least this often while a script runs. */
  heartbeatMs: number;
  /**
   * Issue 12: how long a rebooted host has to come back with a new boot id → else `reboot-timeout`
   * (set by whoever starts a run that may reboot; absent: DEFAULT_REBOOT_TIMEOUT_SECONDS).
   */
  rebootMs?: number;
}

/** The three an admin configures (PATCHNANNY_*_TIMEOUT_MS) and may override per run. */
export type ConfigurableTimeouts = Pick<RunTimeouts, 'approvalMs' | 'agentPickupMs' | 'scriptMs'>;

export const DEFAULT_TIMEOUTS: ConfigurableTimeouts = {
  approvalMs: 24 * 3600_000,
  agentPickupMs: 5 * 60_000,
  scriptMs: 60 * 60_000,
};

/**
 * The one place a run's timeouts are made, for API runs and window runs alike: the configured
 * defaults, then per-run overrides; the heartbeat follows the script timeout (1–30 s).
 */
export function resolveRunTimeouts(
  defaults: ConfigurableTimeouts,
  overrides: Partial<ConfigurableTimeouts> = {},
): RunTimeouts {
  const t = { ...defaults, ...overrides };
  return { ...t, heartbeatMs: Math.min(30_000, Math.max(1000, Math.floor(t.scriptMs / 20))) };
}

/** When a run belongs to a maintenance window: the times it must respect (epoch ms). */
export interface RunWindow {
  windowId: string;
  /** Apply never starts before this (the window start; pre-approved plans are made earlier). */
  startsAt: number;
  /** A run that has not started applying by now is `skipped-window-closed` (end − cutoff). */
  applyBy: number;
  /** An apply still running at window end finishes (never kill a package manager) and is flagged overran. */
  endsAt: number;
}

/**
 * A window run's timeouts as it starts now: an agent that has not picked up its task by the
 * cutoff cannot patch in this window, and an approval is due by the window start. Shared by the
 * window firing and the rollouts it starts, so their runs get the same deadlines.
 */
export function windowRunTimeouts(timeouts: RunTimeouts, window: RunWindow, now: number): RunTimeouts {
  return {
    ...timeouts,
    agentPickupMs: Math.max(1000, window.applyBy - now),
    approvalMs: Math.max(1000, window.startsAt - now),
  };
}

export interface PatchRunInput {
  runId: string;
  agentId: string;
  hostname: string;
  mode: RunMode;
  approval: ApprovalPolicy;
  requestedBy: string;
  timeouts: RunTimeouts;
  window?: RunWindow;
  /** A Proxmox VE container of the agent's node (docs/proxmox.md); absent: the host itself. */
  container?: RunContainer;
  /** Issue 16: plan and apply only security fixes (the script's `--security-only`); absent = false. */
  securityOnly?: boolean;
  /** Issue 12: reboot after a successful apply (docs/reboot-and-hooks.md); absent = `never`. */
  reboot?: RebootPolicy;
  /** Issue 12: hook scripts before the apply and after it (and after a reboot); absent = none. */
  hooks?: RunHooks;
}

/** Snapshot before apply: none, keep it (reported, pruned later), or roll back to it when the apply fails. */
export const SNAPSHOT_MODES = ['none', 'keep', 'rollback'] as const;
export type SnapshotMode = (typeof SNAPSHOT_MODES)[number];

/**
 * Where a container run's `startIfStopped` and `snapshot` came from (docs/proxmox.md): the run's
 * own request, its maintenance window, the container's default an admin set, or nobody said (off).
 * The first that says wins: run > window > container > off.
 */
export const OPTION_SOURCES = ['run', 'window', 'container', 'off'] as const;
export type OptionSource = (typeof OPTION_SOURCES)[number];

/** What one layer says; null or absent: it says nothing, the next layer decides. */
export interface ContainerOptionLayer {
  startIfStopped?: boolean | null;
  snapshot?: SnapshotMode | null;
}

/** The options in effect on a container run and where each came from (recorded on the run). */
export interface ContainerOptions {
  startIfStopped: boolean;
  snapshot: SnapshotMode;
  from: { startIfStopped: OptionSource; snapshot: OptionSource };
}

/** The one place the precedence rule lives: run > window > container default > off. */
export function resolveContainerOptions(layers: {
  run?: ContainerOptionLayer;
  window?: ContainerOptionLayer;
  container?: ContainerOptionLayer;
}): ContainerOptions {
  const pick = <K extends keyof ContainerOptionLayer>(key: K, off: NonNullable<ContainerOptionLayer[K]>) => {
    for (const source of ['run', 'window', 'container'] as const) {
      const value = layers[source]?.[key];
      if (value !== undefined && value !== null)
        return { value: value as NonNullable<ContainerOptionLayer[K]>, source };
    }
    return { value: off, source: 'off' as const };
  };
  const start = pick('startIfStopped', false);
  const snapshot = pick('snapshot', 'none');
  return {
    startIfStopped: start.value,
    snapshot: snapshot.value,
    from: { startIfStopped: start.source, snapshot: snapshot.source },
  };
}

/** How long a container run waits out a locked container (backup, migration) unless it says otherwise. */
export const DEFAULT_CONTAINER_LOCK_WAIT_MS = 15 * 60_000;

/** A run on an LXC container of a Proxmox VE node, executed by the node's agent through `pct`. */
export interface RunContainer {
  vmid: number;
  /** A stopped container is started for the run and stopped again after it (else skipped-container-stopped). */
  startIfStopped: boolean;
  snapshot: SnapshotMode;
  /** How long a locked container (backup, migrate, snapshot) is waited for before skipped-container-locked. */
  lockWaitMs: number;
}

/**
 * An approval is a signed statement (contract/approval.ts): unsigned approvals are refused. A
 * rejection is not signed: it can only stop a run, never change a host.
 */
export type ApproveDecision = SignedApproval;

export interface RejectDecision {
  by: string;
  reason: string;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

function text(raw: Record<string, unknown>, field: string, max: number, pattern: RegExp): string | null {
  const v = raw[field];
  return typeof v === 'string' && v.length >= 1 && v.length <= max && pattern.test(v) ? v : null;
}

const BY_PROBLEM = `by: a name of 1–${LIMITS.by} characters without control characters is required`;

/** Validate an approve decision from an Update or a Signal (a signal's payload is anything). */
export function checkApprove(raw: unknown): Checked<ApproveDecision> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problem: 'not an object' };
  const r = raw as Record<string, unknown>;
  const by = text(r, 'by', LIMITS.by, SINGLE_LINE_TEXT);
  if (by === null) return { ok: false, problem: BY_PROBLEM };
  if (typeof r.planHash !== 'string' || !PLAN_HASH_PATTERN.test(r.planHash))
    return { ok: false, problem: 'planHash: a 64-hex plan hash is required' };
  const runId = text(r, 'runId', 200, SINGLE_LINE_TEXT);
  if (runId === null) return { ok: false, problem: 'runId: the run id the approval was signed for is required' };
  if (typeof r.at !== 'string' || !ISO_TIME_PATTERN.test(r.at) || Number.isNaN(Date.parse(r.at)))
    return { ok: false, problem: 'at: the ISO time the approval was signed is required' };
  if (typeof r.keyId !== 'string' || !KEY_ID_PATTERN.test(r.keyId))
    return { ok: false, problem: 'keyId: the approver key id (key_…) is required (unsigned approvals are refused)' };
  if (typeof r.signature !== 'string' || !SIGNATURE_PATTERN.test(r.signature))
    return {
      ok: false,
      problem: 'signature: a base64url Ed25519 signature is required (unsigned approvals are refused)',
    };
  return {
    ok: true,
    value: { runId, planHash: r.planHash, by, at: r.at, keyId: r.keyId, signature: r.signature },
  };
}

export function checkReject(raw: unknown): Checked<RejectDecision> {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problem: 'not an object' };
  const r = raw as Record<string, unknown>;
  const by = text(r, 'by', LIMITS.by, SINGLE_LINE_TEXT);
  if (by === null) return { ok: false, problem: BY_PROBLEM };
  const reason = text(r, 'reason', LIMITS.reason, MULTI_LINE_TEXT);
  if (reason === null)
    return { ok: false, problem: `reason: 1–${LIMITS.reason} characters without control characters are required` };
  return { ok: true, value: { by, reason } };
}
