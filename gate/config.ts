/** The gate's configuration from the environment (zod), parsed with runtime/temporal.ts parseEnv. */
import { z } from 'zod';
import { hostPort } from '../runtime/listen';
import { TemporalEnv } from '../runtime/temporal';

export { splitHostPort } from '../runtime/listen';

/**
 * Upstream: the TemporalEnv variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API key) name the
 * real frontend and the namespace credential the gate — and only the gate, among agent-facing
 * processes — holds.
 */
export const GateEnv = TemporalEnv.extend({
  /**
   * Where agents connect. Their tokens cross this channel: production serves TLS (below). Not
   * 7236: a self-hosted Temporal binds its internal-frontend there by default.
   */
  PATCHNANNY_GATE_LISTEN: hostPort('PATCHNANNY_GATE_LISTEN').default('127.0.0.1:7280'),
  /** HMAC key binding task tokens to queues; every gate of one deployment shares it. */
  PATCHNANNY_GATE_KEY: z.string().min(32, 'PATCHNANNY_GATE_KEY must be at least 32 characters (random)'),
  /** Serve TLS to agents with this certificate and key (PEM paths); both or neither. */
  PATCHNANNY_GATE_TLS_CERT: z.string().min(1).optional(),
  PATCHNANNY_GATE_TLS_KEY: z.string().min(1).optional(),
  /** HTTP GET /healthz → {ok, db, temporal}. */
  PATCHNANNY_GATE_HEALTH_LISTEN: hostPort('PATCHNANNY_GATE_HEALTH_LISTEN').default('127.0.0.1:7281'),
  /** How often agents with open calls are looked up again (a revoked agent's polls are cut). */
  PATCHNANNY_GATE_RECHECK_MS: z.coerce.number().int().min(50).max(60_000).default(1000),
  DATABASE_URL: z.string().min(1, 'DATABASE_URL is required (the gate reads agents)'),
}).refine((e) => (e.PATCHNANNY_GATE_TLS_CERT === undefined) === (e.PATCHNANNY_GATE_TLS_KEY === undefined), {
  message: 'PATCHNANNY_GATE_TLS_CERT and PATCHNANNY_GATE_TLS_KEY go together: set both or neither',
  path: ['PATCHNANNY_GATE_TLS_CERT'],
});
export type GateEnv = z.infer<typeof GateEnv>;
