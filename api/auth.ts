import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { sha256Hex } from '../contract/plan-hash';
import type { Db } from '../db';
import { agentByTokenHash } from '../db/agents';
import type { AdminToken } from './env';
import { ApiError } from './errors';

export type Principal =
  | { role: 'admin'; name: string }
  | { role: 'enrol'; name: 'enrolment' }
  | { role: 'agent'; agentId: string; name: string };

export type Role = Principal['role'];

/** What every authenticated route finds in `ctx.state` (routers are `Router<AppState>`). */
export interface AppState {
  principal: Principal;
}

/** A fresh agent token: shown once at registration, stored only as its SHA-256. */
export function newAgentToken(): { token: string; hash: string } {
  const token = `pna_${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256Hex(token) };
}

function sameSecret(a: string, b: string): boolean {
  // Compare fixed-length digests so neither content nor length leaks through timing.
  return timingSafeEqual(Buffer.from(sha256Hex(a), 'hex'), Buffer.from(sha256Hex(b), 'hex'));
}

/** Bearer-token authentication: admin tokens from config, agent tokens from the agents table. */
export function authenticate(db: Db, admins: AdminToken[], enrolToken: string | undefined): Middleware<AppState> {
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new ApiError('unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    const token = match[1];
    let principal: Principal | undefined;
    const admin = admins.find((a) => sameSecret(a.token, token));
    if (admin) principal = { role: 'admin', name: admin.name };
    else if (enrolToken && sameSecret(enrolToken, token)) principal = { role: 'enrol', name: 'enrolment' };
    else if (token.startsWith('pna_')) {
      const agent = await agentByTokenHash(db, sha256Hex(token));
      if (agent && agent.status !== 'revoked')
        principal = { role: 'agent', agentId: agent.id, name: `agent:${agent.id}` };
    }
    if (!principal) throw new ApiError('unauthorized', 'invalid token');
    ctx.state.principal = principal;
    await next();
  };
}

/** A Koa (not router) middleware, so it composes with any route's own state, e.g. `validate`'s. */
export function requireRole(...roles: Role[]): Middleware<AppState> {
  return async (ctx, next) => {
    const { principal } = ctx.state;
    if (!roles.includes(principal.role)) {
      throw new ApiError('forbidden', `${principal.role} tokens may not ${ctx.method} ${ctx.path}`);
    }
    await next();
  };
}
