import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import { sha256Hex } from '../contract/plan-hash';
import type { Db } from '../db';
import { agentByTokenHash } from '../db/agents';
import { enrolmentTokenState, refusalMessage } from '../db/enrolment-tokens';
import { userByTokenHash } from '../db/users';
import type { AdminToken } from './env';
import { ApiError } from './errors';
import type { Role, UserRole } from './roles';

export type Principal =
  /** A person: a user of the users table, or a bootstrap admin from PATCHNANNY_ADMIN_TOKENS. */
  | { role: UserRole; name: string }
  /** An enrolment token that can still register an agent (its use is spent by the registration). */
  | { role: 'enrol'; name: string; tokenId: string; tokenHash: string }
  | { role: 'agent'; agentId: string; name: string }
  /** An agent an admin has not accepted yet: it may only read itself, to learn when it is accepted. */
  | { role: 'pending-agent'; agentId: string; name: string };

export type { Role };

/** What every authenticated route finds in `ctx.state` (routers are `Router<AppState>`). */
export interface AppState {
  principal: Principal;
}

/**
 * The kinds of bearer token the API issues, by prefix: enrolment (`pne_`), user (`pnu_`) and
 * agent (`pna_`); authenticate() tells them apart by it.
 */
export const TOKEN_PREFIX = { enrolment: 'pne_', user: 'pnu_', agent: 'pna_' } as const;

/** A fresh token of a kind: shown once when issued, stored only as its SHA-256. */
export function newToken(kind: keyof typeof TOKEN_PREFIX): { token: string; hash: string } {
  const token = `${TOKEN_PREFIX[kind]}${randomBytes(32).toString('base64url')}`;
  return { token, hash: sha256Hex(token) };
}

function sameSecret(a: string, b: string): boolean {
  // Compare fixed-length digests so neither content nor length leaks through timing.
  return timingSafeEqual(Buffer.from(sha256Hex(a), 'hex'), Buffer.from(sha256Hex(b), 'hex'));
}

/**
 * Bearer-token authentication: bootstrap admin tokens from config (PATCHNANNY_ADMIN_TOKENS, each
 * an admin named as today), user tokens from user_tokens (looked up on every request, so a
 * revoked token or a disabled user is refused at once), enrolment tokens from the
 * enrolment_tokens table, agent tokens from the agents table. A token that can no longer be used
 * (expired, used up or revoked enrolment token; revoked agent) is refused with 401 saying which,
 * so the person holding it knows what to ask an admin for.
 */
export function authenticate(db: Db, admins: AdminToken[]): Middleware<AppState> {
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new ApiError('unauthorized', 'missing bearer token (Authorization: Bearer <token>)');
    const token = match[1];
    let principal: Principal | undefined;
    const admin = admins.find((a) => sameSecret(a.token, token));
    if (admin) principal = { role: 'admin', name: admin.name };
    else if (token.startsWith(TOKEN_PREFIX.user)) {
      const user = await userByTokenHash(db, sha256Hex(token));
      if (user?.token_revoked_at) throw new ApiError('unauthorized', `token ${user.token_id} was revoked`);
      if (user?.disabled_at) throw new ApiError('unauthorized', `user ${user.name} is disabled`);
      if (user) principal = { role: user.role, name: user.name };
    } else if (token.startsWith(TOKEN_PREFIX.enrolment)) {
      const hash = sha256Hex(token);
      const state = await enrolmentTokenState(db, hash);
      if (state?.refusal) throw new ApiError('unauthorized', refusalMessage(state.id, state.refusal));
      if (state) principal = { role: 'enrol', name: `enrolment:${state.id}`, tokenId: state.id, tokenHash: hash };
    } else if (token.startsWith(TOKEN_PREFIX.agent)) {
      const agent = await agentByTokenHash(db, sha256Hex(token));
      if (agent?.status === 'revoked') throw new ApiError('agent_revoked', `agent ${agent.id} was revoked`);
      if (agent?.status === 'accepted') principal = { role: 'agent', agentId: agent.id, name: `agent:${agent.id}` };
      if (agent?.status === 'pending')
        principal = { role: 'pending-agent', agentId: agent.id, name: `agent:${agent.id}` };
    }
    if (!principal) throw new ApiError('unauthorized', 'invalid token');
    ctx.state.principal = principal;
    await next();
  };
}
