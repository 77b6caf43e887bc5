/**
 * Webhook events and their signature (docs/webhooks.md): shared by the API (subscriptions), the
 * control worker (emitting and delivering) and receivers (verifying).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const WEBHOOK_EVENTS = [
  /** A run's plan is made and waits for a person's approval. */
  'plan.awaiting-approval',
  /** A run's plan was approved by a patch baseline, not a person (issue 12): which one, and each package's rule. */
  'plan.auto-approved',
  /** A run ended `failed`. */
  'run.failed',
  /** A run ended `agent-unreachable`: its agent did not pick up its work in time. */
  'agent.unreachable',
  /**
   * A window's run was skipped (not approved by the window's start, or not started by its cutoff),
   * or a whole firing started no runs (`runId: null`, with a `reason`).
   */
  'window.skipped',
  /** A window's run finished applying after the window's end. */
  'window.overran',
  /** A heads-up PATCHNANNY_WEBHOOK_UPCOMING_HOURS before a window opens (the control worker's sweep). */
  'window.upcoming',
  /** Reserved for fleet rollouts: a rollout halted (not emitted yet). */
  'rollout.halted',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export const SIGNATURE_HEADER = 'x-patchnanny-signature';

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the subscription's secret>` */
export function signWebhook(secret: string, body: string, at = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${at}.${body}`).digest('hex');
  return `t=${at},v1=${mac}`;
}

/**
 * A receiver's check: the header's MAC matches the body, and its time is within `toleranceS` of
 * now (a replayed old delivery is refused). Constant-time comparison.
 */
export function verifyWebhook(
  secret: string,
  body: string,
  header: string,
  toleranceS = 300,
  now = Date.now(),
): boolean {
  const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
  const at = Number(parts.t);
  if (!Number.isInteger(at) || !parts.v1 || Math.abs(now / 1000 - at) > toleranceS) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${at}.${body}`).digest('hex'));
  const got = Buffer.from(parts.v1);
  return got.length === expected.length && timingSafeEqual(got, expected);
}
