import path from 'node:path';
import { z } from 'zod';
import { TemporalEnv } from '../contract/temporal';

const ms = z.coerce.number().int().positive();

export const ApiEnv = TemporalEnv.extend({
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required (npm start provides an embedded one)'),
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().default('127.0.0.1'),
  /** Comma-separated admin tokens, each `name:token` (the name is recorded as approver) or a bare token. */
  PATCHNANNY_ADMIN_TOKENS: z.string().min(1, 'at least one admin token is required'),
  /** Token agents may use to register themselves (only POST /v1/agents). */
  PATCHNANNY_ENROL_TOKEN: z.string().min(16).optional(),
  PATCHNANNY_CONTROL_QUEUE: z.string().min(1).default('patch-control'),
  /** Folder whose `*-update.sh` files are loaded into the scripts table at start. */
  PATCHNANNY_SCRIPTS_DIR: z.string().default(path.resolve(__dirname, '../../scripts/patch')),
  PATCHNANNY_APPROVAL_TIMEOUT_MS: ms.default(24 * 3600_000),
  PATCHNANNY_AGENT_PICKUP_TIMEOUT_MS: ms.default(5 * 60_000),
  PATCHNANNY_SCRIPT_TIMEOUT_MS: ms.default(60 * 60_000),
});
export type ApiEnv = z.infer<typeof ApiEnv>;

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
