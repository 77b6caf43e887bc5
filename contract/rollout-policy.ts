import { z } from 'zod';
import type { RunOutcome } from './index';

/**
 * What a rollout or a window asks of each host's run besides plan → review → apply (issue 12):
 * a reboot policy and pre/post hooks. Shared by the API, the rollout and window workflows and
 * patchRun; docs/rollouts.md explains each.
 */

/** `never`: report reboot-required only; `if-needed`: reboot when the script says so; `always`: reboot after every apply. */
export const RebootPolicy = z.enum(['never', 'if-needed', 'always']);
export type RebootPolicy = z.infer<typeof RebootPolicy>;

/** A hook is a script like the patch scripts (downloaded, hash-verified, signature-checked), by name. */
export const HookScriptName = z.string().regex(/^[a-z0-9][a-z0-9.-]{0,99}\.sh$/, 'a hook script name like drain-lb.sh');

export const HookSpec = z.strictObject({
  script: HookScriptName,
  /** Killed (process group, SIGTERM then SIGKILL) after this long; counts as a failure. */
  timeoutSeconds: z.number().int().min(1).max(3600).default(300),
  /** `must-succeed`: a failing pre-hook skips the apply; a failing post-hook fails the run. `ignore-failure`: recorded only. */
  onFailure: z.enum(['must-succeed', 'ignore-failure']).default('must-succeed'),
});
export type HookSpec = z.infer<typeof HookSpec>;

export const RunHooks = z.strictObject({ pre: HookSpec.optional(), post: HookSpec.optional() });
export type RunHooks = z.infer<typeof RunHooks>;

/**
 * How a rollout's plans are approved (when its approval is `required`): `per-run`, each host's
 * plan by a person as any run's; `plan-group`, one signed approval of a plan hash for the whole
 * rollout covers every host whose plan has exactly that hash (docs/rollouts.md "Approval scope").
 */
export const ApprovalScope = z.enum(['per-run', 'plan-group']);
export type ApprovalScope = z.infer<typeof ApprovalScope>;

/** The most hosts one rollout may name (its targets are recorded, and its history must stay small). */
export const MAX_ROLLOUT_HOSTS = 5000;

/** How long a rebooted host has to come back with a new boot id before the run ends `reboot-timeout`. */
export const DEFAULT_REBOOT_TIMEOUT_SECONDS = 900;

/** A window's or rollout's own reboot timeout (`rebootTimeoutSeconds`): a minute to a day. */
export const RebootTimeoutSeconds = z.number().int().min(60).max(86400);

/** The run timeouts' `rebootMs` for a policy's own timeout (null or absent: the default). */
export const rebootMsOf = (seconds: number | null | undefined) => (seconds ?? DEFAULT_REBOOT_TIMEOUT_SECONDS) * 1000;

/**
 * Outcomes that spend a rollout's error budget: the host was meant to be patched and is not
 * known to be healthy. Decisions by people (rejected, cancelled), skips by design (window closed,
 * container stopped or locked, pre-hook refused the host) and nothing-to-do do not count.
 */
export const BUDGET_OUTCOMES: ReadonlySet<RunOutcome> = new Set<RunOutcome>([
  'failed',
  'plan-drift',
  'agent-unreachable',
  'agent-revoked',
  'untrusted-input',
  'container-gone',
  'reboot-timeout',
  'post-hook-failed',
]);
