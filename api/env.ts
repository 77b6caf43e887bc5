import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_TIMEOUTS, type ConfigurableTimeouts } from '../contract';
import { TemporalEnv } from '../runtime/temporal';

const ms = z.coerce.number().int().positive();

export const ApiEnv = TemporalEnv.extend({
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required (npm start provides an embedded one)'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('127.0.0.1'),
  /** Comma-separated admin tokens, each `name:token` (the name is recorded as approver) or a bare token. */
  PATCHNANNY_ADMIN_TOKENS: z.string().min(1, 'at least one admin token is required'),
  PATCHNANNY_CONTROL_QUEUE: z.string().min(1).default('patch-control'),
  /** Folder whose `*-update.sh` files are loaded into the scripts table at start. */
  PATCHNANNY_SCRIPTS_DIR: z.string().default(path.resolve(__dirname, '../../scripts/patch')),
  PATCHNANNY_APPROVAL_TIMEOUT_MS: ms.default(DEFAULT_TIMEOUTS.approvalMs),
  PATCHNANNY_AGENT_PICKUP_TIMEOUT_MS: ms.default(DEFAULT_TIMEOUTS.agentPickupMs),
  PATCHNANNY_SCRIPT_TIMEOUT_MS: ms.default(DEFAULT_TIMEOUTS.scriptMs),
  /** `api` serves HTTP only, `worker` polls the control queue only; a typo must not silently run neither. */
  /** Where the review page links each run's workflow (the Temporal UI; it has no login: keep it internal). */
  PATCHNANNY_TEMPORAL_UI_URL: z.url().default('http://127.0.0.1:8233'),
  /** How many hours before a window opens its `window.upcoming` webhook is sent (docs/webhooks.md). */
  PATCHNANNY_WEBHOOK_UPCOMING_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 31)
    .default(24),
  PATCHNANNY_ROLE: z.enum(['all', 'api', 'worker']).default('all'),
});
export type ApiEnv = z.infer<typeof ApiEnv>;

/** The configured run timeouts, for API runs and window runs alike (resolveRunTimeouts applies them). */
export const runDefaultsOf = (env: ApiEnv): ConfigurableTimeouts => ({
  approvalMs: env.PATCHNANNY_APPROVAL_TIMEOUT_MS,
  agentPickupMs: env.PATCHNANNY_AGENT_PICKUP_TIMEOUT_MS,
  scriptMs: env.PATCHNANNY_SCRIPT_TIMEOUT_MS,
});

export interface AdminToken {
  name: string;
  token: string;
}

export function parseAdminTokens(raw: string): AdminToken[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const i = entry.indexOf(':');
      return i > 0 ? { name: entry.slice(0, i), token: entry.slice(i + 1) } : { name: 'admin', token: entry };
    });
}
