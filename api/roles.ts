/**
 * The one table of who may call what. Every authenticated route is registered with `at()` from
 * its key here, so a route cannot exist without a row and no route states its roles twice;
 * the README's API table and test/api/route-roles.test.ts are checked against this table.
 *
 * People have one role each: admin (everything), approver (decide on runs, read), requester
 * (start runs, cancel their own, read), viewer (read). Machines keep their narrow rights: an
 * agent reads itself and the scripts it runs, a pending agent only itself, an enrolment token
 * only registers an agent.
 *
 * Cancel sits with admin, approver and requester (a requester only for runs they requested,
 * checked by the route): cancelling never changes a host beyond what the run already did, so
 * whoever may start or approve a run may also stop it; a viewer only watches.
 */
import type { Middleware } from 'koa';
import type { AppState } from './auth';
import { APPROVING_ROLES, type UserRole } from '../contract/roles';
import { ApiError } from './errors';

export { USER_ROLES, type UserRole } from '../contract/roles';
/** Every kind of principal: people by role, and the machine principals. */
export type Role = UserRole | 'enrol' | 'agent' | 'pending-agent';

const READ: readonly Role[] = ['admin', 'approver', 'requester', 'viewer'];

export const ROUTE_ROLES = {
  'POST /v1/agents': ['admin', 'enrol'],
  'GET /v1/agents': READ,
  // An agent or pending agent may read only itself (checked by the route).
  'GET /v1/agents/:id': [...READ, 'agent', 'pending-agent'],
  'PATCH /v1/agents/:id': ['admin'],
  'POST /v1/agents/:id/accept': ['admin'],
  // Issue 12: labels decide which windows and baselines select an agent, so only admins set them.
  'PUT /v1/agents/:id/labels': ['admin'],
  'DELETE /v1/agents/:id': ['admin'],
  // Proxmox VE (docs/proxmox.md): a node's containers; its agent reports them (only its own, checked by the route).
  'GET /v1/agents/:id/containers': READ,
  'PUT /v1/agents/:id/containers': ['agent'],
  // A container's run defaults (startIfStopped, snapshot): docs/proxmox.md.
  'PUT /v1/agents/:id/containers/:vmid/defaults': ['admin'],
  'POST /v1/enrolment-tokens': ['admin'],
  'GET /v1/enrolment-tokens': ['admin'],
  'DELETE /v1/enrolment-tokens/:id': ['admin'],
  'GET /v1/audit': ['admin'],
  'POST /v1/keys': APPROVING_ROLES,
  'GET /v1/keys': READ,
  'DELETE /v1/keys/:id': APPROVING_ROLES,
  'GET /v1/agents/:agentId/exceptions': READ,
  'POST /v1/agents/:agentId/exceptions': ['admin'],
  'PATCH /v1/agents/:agentId/exceptions/:id': ['admin'],
  'DELETE /v1/agents/:agentId/exceptions/:id': ['admin'],
  'GET /v1/scripts': [...READ, 'agent'],
  'GET /v1/scripts/:name': [...READ, 'agent'],
  // Issue 12: hook scripts, uploaded by admins, served to agents like patch scripts (docs/reboot-and-hooks.md).
  'PUT /v1/hooks/:name': ['admin'],
  'GET /v1/hooks': [...READ, 'agent'],
  'GET /v1/hooks/:name': [...READ, 'agent'],
  'POST /v1/runs': ['admin', 'requester'],
  'GET /v1/runs': READ,
  'GET /v1/runs/:id': READ,
  'POST /v1/runs/:id/approve': APPROVING_ROLES,
  'POST /v1/runs/:id/reject': APPROVING_ROLES,
  // A requester only their own runs (checked by the route).
  'POST /v1/runs/:id/cancel': ['admin', 'approver', 'requester'],
  // Live output (issue 17): only the run's own agent writes it (checked by the route), people read it.
  'POST /v1/runs/:id/output': ['agent'],
  'GET /v1/runs/:id/output': READ,
  // The review desk (issue 17): a group's decision is each run's own, with the same rules.
  'GET /v1/reviews': READ,
  'GET /v1/reviews/diff': READ,
  'POST /v1/reviews/:planHash/approve': APPROVING_ROLES,
  'POST /v1/reviews/:planHash/reject': APPROVING_ROLES,
  'GET /v1/compliance': READ,
  'POST /v1/windows': ['admin'],
  'GET /v1/windows': READ,
  'GET /v1/windows/:id': READ,
  'PATCH /v1/windows/:id': ['admin'],
  'DELETE /v1/windows/:id': ['admin'],
  'POST /v1/windows/:id/pause': ['admin'],
  'POST /v1/windows/:id/resume': ['admin'],
  'POST /v1/windows/:id/trigger': ['admin'],
  // Patch baselines (docs/labels-and-baselines.md): an admin's standing approval, so only admins
  // change them; everyone who reads runs may see what approves them.
  'POST /v1/baselines': ['admin'],
  'GET /v1/baselines': READ,
  'GET /v1/baselines/:id': READ,
  'PUT /v1/baselines/:id': ['admin'],
  'DELETE /v1/baselines/:id': ['admin'],
  // Rollouts (docs/rollouts.md): fleet-wide like windows, so admins start and steer them.
  'POST /v1/rollouts': ['admin'],
  'GET /v1/rollouts': READ,
  'GET /v1/rollouts/:id': READ,
  'POST /v1/rollouts/:id/pause': ['admin'],
  'POST /v1/rollouts/:id/resume': ['admin'],
  'POST /v1/rollouts/:id/abort': ['admin'],
  // A plan-group approval decides on runs: whoever may approve a run may give it (never the rollout's creator).
  'POST /v1/rollouts/:id/approve': APPROVING_ROLES,
  'GET /v1/users': ['admin'],
  'POST /v1/users': ['admin'],
  'GET /v1/users/:name': ['admin'],
  'PATCH /v1/users/:name': ['admin'],
  'POST /v1/users/:name/tokens': ['admin'],
  'DELETE /v1/users/:name/tokens/:id': ['admin'],
  // Signed webhooks (docs/webhooks.md): subscriptions hold secrets and URLs, so admins only.
  'POST /v1/webhooks': ['admin'],
  'GET /v1/webhooks': ['admin'],
  'DELETE /v1/webhooks/:id': ['admin'],
  'GET /v1/webhooks/:id/deliveries': ['admin'],
} as const satisfies Record<string, readonly Role[]>;

export type RouteKey = keyof typeof ROUTE_ROLES;

export const rolesOf = (key: RouteKey): readonly Role[] => ROUTE_ROLES[key];

/** Refuse (403) a principal whose role the table does not list for this route. */
export function allow(key: RouteKey): Middleware<AppState> {
  const roles = rolesOf(key);
  const middleware: Middleware<AppState> = async (ctx, next) => {
    const { principal } = ctx.state;
    if (!roles.includes(principal.role)) {
      if (principal.role === 'pending-agent')
        throw new ApiError(
          'forbidden',
          `agent ${principal.agentId} is pending acceptance (an admin accepts it with POST /v1/agents/${principal.agentId}/accept); until then its token may only GET /v1/agents/${principal.agentId}`,
        );
      const who =
        principal.role === 'enrol' || principal.role === 'agent'
          ? `${principal.role} tokens`
          : `${principal.name} (${principal.role})`;
      throw new ApiError('forbidden', `${who} may not ${key}; allowed: ${roles.join(', ')}`);
    }
    await next();
  };
  GUARDED.set(middleware, key);
  return middleware;
}

/** The route key each `allow` middleware checks (read off the router's layers by api/openapi/). */
const GUARDED = new WeakMap<object, RouteKey>();
export const routeKeyOf = (middleware: unknown): RouteKey | undefined =>
  typeof middleware === 'function' ? GUARDED.get(middleware) : undefined;

/**
 * A route's path and role check from its key, for the router's verb:
 * `router.post(...at('POST /v1/runs'), validate(…), handler)`. The path comes from the key, so it
 * is written once; a verb that does not match the key is caught by test/api/route-roles.test.ts
 * (the route would answer 404/405 where the table expects 403).
 */
export function at(key: RouteKey): [string, Middleware<AppState>] {
  return [key.slice(key.indexOf(' ') + 1), allow(key)];
}
